"""The committed embedded default model (data/demo-model): small, loadable offline, trained.

These guard the file the whole offline experience rests on: that it stays well under 50 MB in
files a Git host accepts, that its training record holds what the README quotes, and that the
weights loaded through `wb.load("demo")` are the trained ones (answers a random or half-loaded
model could not give).
"""

from __future__ import annotations

import json

import pytest

import workbench as wb
from workbench.resources import demo_model_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_files_are_small_and_the_record_is_complete():
    folder = demo_model_dir()
    sizes = {f.name: f.stat().st_size for f in folder.iterdir()}
    assert sum(sizes.values()) < 40e6 and max(sizes.values()) < 16e6, sizes
    record = json.loads((folder / "workbench_record.json").read_text())
    for key in ("command", "config", "corpus", "tokens_seen", "hardware", "wall_time_s", "heldout",
                "eval_curve", "fill_mask_examples"):
        assert record.get(key), key
    held = record["heldout"]
    assert held["accuracy"] > 5 * held["unigram_accuracy"]  # the README's claim, from the record
    assert record["corpus"]["corpus_hash"] and record["config"]["masking"] == "dynamic"


@pytest.fixture(scope="module")
def demo():
    return wb.load("demo", device="cpu")


def test_loads_offline_with_its_trained_weights(demo):
    assert demo.kind == "mlm" and demo.config.num_hidden_layers == 6
    answers = wb.fill_mask(demo, [
        "The president of the United <mask> spoke to reporters on Tuesday.",
        "The Prime Minister will answer questions in the House of <mask>.",
    ], top_k=3)
    top1 = answers[answers["rank"] == 1].sort_values("text_id")["token"].str.strip().tolist()
    assert top1 == ["States", "Commons"]


def test_agrees_with_its_training_record(demo):
    """The answers recorded at export time are what the committed files give today."""
    record = json.loads((demo_model_dir() / "workbench_record.json").read_text())
    example = record["fill_mask_examples"][2]
    got = wb.fill_mask(demo, example["text"], top_k=5)["token"].str.strip().tolist()
    assert got == [word for word, _ in example["top"]]
