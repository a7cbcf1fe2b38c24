"""MLM pretraining: masking rules, packing, a tiny run that learns, exact resume, the CLI mapping."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.testing import run_two_processes
from workbench.training.corpus import Corpus, pack
from workbench.training.packing import pack_sequences
from workbench.training.events import Event, StopFlag
from workbench.training.masking import IGNORE_INDEX, Masker, TokenTables, word_start_positions
from workbench.training.pretrain import PretrainConfig, pretrain
from workbench.training.run import Run


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def tables(tokenizer):
    return TokenTables.from_tokenizer(tokenizer)


@pytest.fixture(scope="module")
def batch(tokenizer):
    """(ids (B, T), rows (B,)) of real text with specials and padding."""
    from workbench.testing import offline_text

    texts = offline_text(60_000)[:64]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
    return enc["input_ids"], torch.arange(len(texts))


def test_dynamic_masks_change_across_epochs_and_static_masks_do_not(batch, tables):
    ids, rows = batch
    dynamic = Masker(tables, mode="dynamic", seed=3)
    a = dynamic(ids, rows, epoch=0, draw=0)[1] != IGNORE_INDEX
    b = dynamic(ids, rows, epoch=1, draw=7)[1] != IGNORE_INDEX
    assert (a != b).any(dim=1).all()  # every sequence got a different mask the second time

    single = Masker(tables, mode="static", static_copies=1, seed=3)
    m0, l0 = single(ids, rows, epoch=0, draw=0)
    m5, l5 = single(ids, rows, epoch=5, draw=99)
    assert torch.equal(m0, m5) and torch.equal(l0, l5)

    copies = Masker(tables, mode="static", static_copies=3, seed=3)
    e0, e1, e3 = (copies(ids, rows, epoch=e, draw=e)[1] for e in (0, 1, 3))
    assert torch.equal(e0, e3) and not torch.equal(e0, e1)
    # the mask belongs to the sequence, not to its place in the batch
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    assert torch.equal(copies(ids[perm], rows[perm], epoch=0, draw=0)[1], e0[perm])


def test_80_10_10_proportions_on_a_large_sample(tables):
    g = torch.Generator().manual_seed(0)
    normal = torch.nonzero(~tables.special).flatten()
    ids = normal[torch.randint(len(normal), (1024, 128), generator=g)]           # (B, T)
    masked, labels = Masker(tables, seed=11)(ids, torch.arange(1024), epoch=0, draw=0)
    selected = labels != IGNORE_INDEX
    n = int(selected.sum())
    assert abs(n / ids.numel() - 0.15) < 0.005
    as_mask = (masked[selected] == tables.mask_id).float().mean().item()
    kept = (masked[selected] == ids[selected]).float().mean().item()
    replaced = 1 - as_mask - kept
    assert abs(as_mask - 0.8) < 0.015
    assert abs(replaced - 0.1 * (1 - 1 / len(normal))) < 0.012  # a random draw can hit the original
    assert abs(kept - (0.1 + 0.1 / len(normal))) < 0.012
    assert torch.equal(labels[selected], ids[selected])
    assert not (masked[~selected] != ids[~selected]).any()       # unselected tokens untouched
    assert not tables.special[masked[selected & (masked != tables.mask_id)]].any()


@pytest.mark.parametrize("whole_word", [False, True])
def test_special_tokens_and_padding_are_never_masked(batch, tables, tokenizer, whole_word):
    ids, rows = batch
    assert (ids == tokenizer.pad_token_id).any()
    masker = Masker(tables, probability=0.9, whole_word=whole_word, seed=1)
    for draw in range(5):
        masked, labels = masker(ids, rows, epoch=0, draw=draw)
        special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
        assert (labels[special] == IGNORE_INDEX).all()
        assert torch.equal(masked[special], ids[special])
        assert (labels[~special] != IGNORE_INDEX).float().mean() > 0.8


def test_whole_word_masking_masks_every_piece_of_a_word(tokenizer, tables):
    text = ("The unbelievably overcomplicated instructions bewildered everybody, although "
            "interpretations differed considerably between departments")
    enc = tokenizer([text] * 32, return_tensors="pt")
    ids = enc["input_ids"]
    word_ids = enc.word_ids(0)  # the tokenizer's own pre-tokenised words: an independent oracle
    starts = word_start_positions(ids, tables)[0].tolist()
    pieces = {}
    for pos, w in enumerate(word_ids):
        if w is not None:
            pieces.setdefault(w, []).append(pos)
    assert any(len(p) > 1 for p in pieces.values())  # the text really has multi-piece words
    for positions in pieces.values():
        assert {starts[p] for p in positions} == {positions[0]}
    _, labels = Masker(tables, whole_word=True, probability=0.4, seed=2)(
        ids, torch.arange(32), epoch=0, draw=0)
    chosen = labels != IGNORE_INDEX
    for row in range(32):
        for positions in pieces.values():
            flags = chosen[row, positions]
            assert flags.all() or not flags.any()
    assert chosen.any()


def test_packing_full_and_doc_sentences():
    docs = [[[10, 11, 12], [13, 14]], [[20, 21], [22, 23, 24, 25]], [[30]]]
    full = pack_sequences(docs, 10, bos=0, eos=2, pad=1, mode="full")
    doc = pack_sequences(docs, 10, bos=0, eos=2, pad=1, mode="doc")
    # FULL-SENTENCES: documents share sequences, an extra </s> between them
    assert full[0].tolist() == [0, 10, 11, 12, 13, 14, 2, 20, 21, 2]
    assert full[1].tolist() == [0, 22, 23, 24, 25, 2, 30, 2, 1, 1]
    # DOC-SENTENCES: a sequence never crosses a document border
    assert doc.tolist() == [[0, 10, 11, 12, 13, 14, 2, 1, 1, 1], [0, 20, 21, 22, 23, 24, 25, 2, 1, 1],
                            [0, 30, 2, 1, 1, 1, 1, 1, 1, 1]]
    long = pack_sequences([[list(range(5, 25))]], 10, bos=0, eos=2, pad=1)  # 20 tokens, budget 8
    assert [r[1:9].tolist() for r in long[:2]] == [list(range(5, 13)), list(range(13, 21))]


def test_pack_is_cached_and_holds_out_whole_documents(tokenizer, tmp_path):
    docs = [f"Document {i} talks about topic {i}. It has two sentences." for i in range(50)]
    corpus = Corpus.from_texts(docs)
    a = pack(corpus, tokenizer, seq_len=32, heldout=0.1, cache_dir=tmp_path)
    b = pack(corpus, tokenizer, seq_len=32, heldout=0.1, cache_dir=tmp_path)
    assert np.array_equal(a.train, b.train) and len(list(tmp_path.iterdir())) == 1
    held_text = {tokenizer.decode(r, skip_special_tokens=True) for r in a.heldout}
    train_text = " ".join(tokenizer.decode(r, skip_special_tokens=True) for r in a.train)
    assert a.meta["heldout_documents"] == 5
    for chunk in held_text:
        for sentence in chunk.split(". "):
            if "Document" in sentence:
                assert sentence.strip() not in train_text


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One tokenizer/packing cache for the module's runs (the corpus is tokenised once)."""
    return tmp_path_factory.mktemp("pretrain-cache")


@pytest.fixture(scope="module")
def small_corpus():
    from workbench.testing import offline_text

    return Corpus.from_texts(offline_text(120_000), name="pydoc")


def _tiny(**overrides) -> PretrainConfig:
    base = dict(seq_len=48, vocab_size=600, batch_size=8, max_steps=60, warmup_steps=10,
                eval_every=20, eval_sequences=32, checkpoint_every=1000, log_every=1, heldout=0.05,
                device="cpu")
    return PretrainConfig.from_preset("tiny", **{**base, **overrides})


def test_a_tiny_run_lowers_held_out_loss(small_corpus, cache, tmp_path):
    run = pretrain(small_corpus, config=_tiny(max_steps=40, eval_every=10, learning_rate=3e-3),
                   root=tmp_path / "runs", cache_dir=cache)
    evals = run.metrics("eval")
    first, last = evals["eval_loss"].iloc[0], evals["eval_loss"].iloc[-1]
    assert last < first - 0.5
    assert run.status == "completed" and run.summary["steps"] == 40
    assert 0 <= run.summary["eval_unigram_accuracy"] <= 1
    lm = wb.load(run, device="cpu")  # the final checkpoint opens in every analysis
    assert lm.kind == "mlm" and lm.num_layers == 2


def test_resume_continues_the_same_loss_curve(small_corpus, cache, tmp_path):
    config = _tiny(max_steps=16, checkpoint_every=8, dropout=0.1, eval_every=8)
    root = tmp_path / "runs"
    straight = pretrain(small_corpus, config=config, root=root, cache_dir=cache)

    stop = StopFlag()

    def stop_at_8(event: Event) -> None:
        if event.kind == "step" and event.step == 8:
            stop.request()

    interrupted = pretrain(small_corpus, config=config, root=root, cache_dir=cache,
                           callbacks=[stop_at_8], stop=stop)
    assert interrupted.status == "stopped" and interrupted.checkpoints()[-1][0] == 8
    resumed = pretrain(small_corpus, resume=interrupted, root=root, cache_dir=cache)
    assert resumed == interrupted and resumed.status == "completed"

    a = straight.metrics("step").set_index("step")["loss"]
    b = resumed.metrics("step").set_index("step")["loss"]
    assert list(b.index) == list(range(1, 17))  # no step twice
    assert resumed.metrics("eval")["step"].tolist() == straight.metrics("eval")["step"].tolist()
    np.testing.assert_allclose(b.loc[9:16].to_numpy(), a.loc[9:16].to_numpy(), rtol=0, atol=1e-6)
    assert resumed.summary["eval_loss"] == pytest.approx(straight.summary["eval_loss"], abs=1e-6)


def test_cli_flags_map_onto_the_config(monkeypatch):
    from workbench import cli
    from workbench.training import pretrain_cli

    seen = {}

    def fake_pretrain(corpus, **kwargs):
        seen.update(kwargs, corpus=corpus)
        raise SystemExit(0)

    monkeypatch.setattr("workbench.training.pretrain.pretrain", fake_pretrain)
    args = cli.build_parser().parse_args(
        ["pretrain", "notes.txt", "--preset", "tiny", "--learning-rate", "0.01", "--whole-word",
         "--masking", "static", "--minutes", "2"])
    with pytest.raises(SystemExit):
        pretrain_cli._cmd_pretrain(args)
    config = seen["config"]
    assert seen["corpus"] == "notes.txt"
    assert (config.preset, config.learning_rate, config.whole_word, config.masking) == ("tiny", 0.01, True, "static")
    assert config.time_budget_s == 120 and config.hidden_size == 64


def test_config_validation_names_the_problem():
    from workbench.errors import InputError

    with pytest.raises(InputError, match="divisible"):
        PretrainConfig(hidden_size=100, num_heads=3)
    with pytest.raises(InputError, match="masking"):
        PretrainConfig(masking="sometimes")
    with pytest.raises(InputError, match="preset"):
        PretrainConfig.from_preset("huge")


@pytest.mark.parametrize("field, value, words", [
    ("eval_every", 0, "eval_every=0"), ("checkpoint_every", 0, "checkpoint_every=0"),
    ("log_every", 0, "log_every=0"), ("num_heads", 0, "num_heads=0"),
    ("eval_sequences", 0, "eval_sequences=0"), ("max_grad_norm", -1.0, "max_grad_norm=-1.0"),
    ("weight_decay", -0.1, "weight_decay=-0.1"), ("warmup_steps", -5, "warmup_steps=-5"),
    ("batch_size", "8", "batch_size='8' is a str"), ("lr", float("nan"), "finite"),
    ("max_steps", 2.5, "max_steps=2.5"), ("whole_word", "yes", "whole_word='yes'"),
    ("checkpoint_minutes", -1.0, "checkpoint_minutes=-1.0"), ("heldout", 0.0, "heldout=0.0"),
])
def test_every_bad_field_is_refused_at_construction(field, value, words, tmp_path):
    """Each was accepted before and failed mid-run (ZeroDivisionError) or silently misbehaved
    (max_grad_norm=0 zeroed every gradient): now an InputError naming it, before any folder."""
    from workbench.errors import InputError

    with pytest.raises(InputError, match=words.replace("(", r"\(").replace("[", r"\[")):
        PretrainConfig(**{field: value})
    assert PretrainConfig(max_grad_norm=0).max_grad_norm == 0  # 0 means off, as in fine-tuning
    assert PretrainConfig(max_grad_norm=None).max_grad_norm is None


def test_gradient_clipping_off_leaves_gradients_alone():
    from workbench.training.engine import clip_gradients

    layer = torch.nn.Linear(3, 2)
    layer(torch.ones(4, 3)).sum().backward()
    before = layer.weight.grad.clone()
    for off in (0, 0.0, None):
        assert clip_gradients(layer, off) is None
        assert torch.equal(layer.weight.grad, before)
    assert float(clip_gradients(layer, 1e-3)) > 1e-3 and layer.weight.grad.norm() < before.norm()


def test_the_schedule_is_transformers_linear_warmup_at_every_step():
    from transformers import get_linear_schedule_with_warmup

    from workbench.training.schedule import make_scheduler

    for warmup, total in ((10, 50), (0, 7), (1, 1), (30, 30)):
        ours_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        ours, ref = make_scheduler(ours_opt, warmup, total), \
            get_linear_schedule_with_warmup(ref_opt, warmup, total)
        for _ in range(total + 3):
            assert ours.get_last_lr() == ref.get_last_lr()
            ours_opt.step(), ref_opt.step(), ours.step(), ref.step()


def test_tf32_flags_are_on_during_a_run_and_restored_after(small_corpus, cache, tmp_path):
    seen = []
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        pretrain(small_corpus, config=_tiny(max_steps=2, eval_every=2, precision="auto"),
                 root=tmp_path / "runs", cache_dir=cache,
                 callbacks=[lambda e: seen.append(torch.backends.cuda.matmul.allow_tf32)])
        assert seen and all(seen)  # "auto" allows TF32 inside the run (it acts on CUDA only)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        seen.clear()
        pretrain(small_corpus, config=_tiny(max_steps=2, eval_every=2, precision="fp32"),
                 root=tmp_path / "runs", cache_dir=cache,
                 callbacks=[lambda e: seen.append(torch.backends.cuda.matmul.allow_tf32)])
        assert seen and not any(seen)  # fp32 asked for: exact fp32 matmuls
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_ctrl_c_marks_the_run_interrupted_and_it_resumes(small_corpus, cache, tmp_path):
    root = tmp_path / "runs"

    def ctrl_c(event):
        if event.kind == "step" and event.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(small_corpus, config=_tiny(max_steps=6, eval_every=3, checkpoint_every=100),
                 root=root, cache_dir=cache, callbacks=[ctrl_c])
    (folder,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    run = Run.open(folder)
    assert run.info["status"] == "interrupted" and run.checkpoints() == []
    resumed = pretrain(resume=run.id, root=root, cache_dir=cache)  # before any checkpoint: step 0
    assert resumed.status == "completed" and resumed.summary["steps"] == 6
    assert resumed.metrics("step")["step"].tolist() == list(range(1, 7))
    assert resumed.metrics("eval")["step"].tolist() == [0, 3, 6]


def test_headline_accuracy_counts_mask_positions_only_against_a_full_forward(small_corpus,
                                                                             cache, tmp_path):
    """Oracle: transformers' own MLM forward (its logits at every position, not our gather) on
    the held-out sequences under the same fixed evaluation mask, scored by hand."""
    from workbench.training.corpus import PackedCorpus

    config = _tiny(max_steps=30, eval_every=30, learning_rate=3e-3)
    run = pretrain(small_corpus, config=config, root=tmp_path / "runs", cache_dir=cache)
    lm = wb.load(run, device="cpu")
    packed = PackedCorpus.load(run.info["packed_corpus"])
    ids = torch.from_numpy(packed.heldout[:config.eval_sequences].astype(np.int64))  # (N, T)
    masker = Masker(TokenTables.from_tokenizer(lm.tokenizer), mode=config.masking,
                    probability=config.mask_probability,
                    rates=(config.mask_token_rate, config.random_token_rate), seed=config.seed)
    inputs, labels = masker.evaluation(ids, torch.arange(len(ids)), config.eval_seed)
    lm.model.eval()
    with torch.no_grad():
        logits = lm.model(input_ids=inputs, attention_mask=ids != packed.pad_id).logits  # (N, T, V)
    selected = labels != IGNORE_INDEX
    shown = selected & (inputs == lm.tokenizer.mask_token_id)
    hit = logits.argmax(-1) == labels
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0),
                                            reduction="none")
    s = run.summary
    assert s["eval_tokens"] == int(shown.sum()) < s["eval_selected_tokens"] == int(selected.sum())
    assert s["eval_accuracy"] == int(hit[shown].sum()) / int(shown.sum())
    assert s["eval_selected_accuracy"] == int(hit[selected].sum()) / int(selected.sum())
    assert s["eval_loss"] == pytest.approx(float(nll[shown].mean()), rel=1e-4)
    assert s["eval_selected_loss"] == pytest.approx(float(nll[selected].mean()), rel=1e-4)
    shared = {"steps", "total_steps", "status", "wall_s", "train_s", "precision", "processes",
              "disk_mb"}
    assert shared <= set(s) and "machine" in run.info


def test_pretrain_run_widget_builds_config_from_controls_and_trains_live(small_corpus, cache, tmp_path):
    from workbench.widgets import PretrainRun

    base = _tiny(max_steps=12, eval_every=6)
    w = PretrainRun(small_corpus, config=base, root=tmp_path / "runs", cache_dir=cache)
    w.masking.value = "static"
    w.static_copies.value = 4
    w.whole_word.value = True
    w.max_steps.value = 10
    cfg = w.config()
    assert (cfg.masking, cfg.static_copies, cfg.whole_word, cfg.max_steps) == ("static", 4, True, 10)
    assert cfg.seq_len == base.seq_len  # settings not on the form come from the given config
    w.preset.value = "mini"
    assert w.config().hidden_size == 256 and w.max_steps.value == 5000
    w.preset.value = "tiny"
    w.max_steps.value = 10
    assert len(w.monitor.figure.data) == 0  # nothing drawn before the run
    w.start(block=True)
    assert w.error is None and w.run is not None and w.run.status == "completed"
    assert w.run.config["masking"] == "static" and w.run.summary["steps"] == 10
    names = {t.name for t in w.monitor.figure.data}
    assert {"loss", "eval_loss", "eval_accuracy"} <= names
    loss = next(t for t in w.monitor.figure.data if t.name == "loss")
    assert len(loss.x) == 10
    assert "completed" in w.monitor.status.value


def test_resume_may_extend_the_budget_but_not_change_the_experiment(small_corpus, cache, tmp_path):
    from workbench.errors import InputError
    from workbench.training.corpus import PackedCorpus

    root = tmp_path / "runs"
    run = pretrain(small_corpus, config=_tiny(max_steps=6, eval_every=3), root=root, cache_dir=cache)
    with pytest.raises(InputError, match="cannot change .*'learning_rate'"):
        pretrain(small_corpus, resume=run, config={"learning_rate": 0.5}, root=root, cache_dir=cache)
    other = Corpus.from_texts(list(small_corpus.texts())[1:], name="pydoc")  # one document less
    with pytest.raises(InputError, match="pass the same corpus"):
        pretrain(other, resume=run, root=root, cache_dir=cache,
                 tokenizer=PackedCorpus.load(run.info["packed_corpus"]).tokenizer())
    assert run.status == "completed" and run.summary["steps"] == 6  # refused before any write
    longer = pretrain(small_corpus, resume=run, config={"max_steps": 9}, root=root, cache_dir=cache)
    assert longer.summary["steps"] == 9 and longer.config["max_steps"] == 9
    steps = longer.metrics("step")["step"].tolist()
    assert steps == list(range(1, 10))


# ----------------------------------------------------------------------------- several processes
# The torchrun path a multi-GPU machine takes, on CPU with gloo. Oracle: one process with twice the
# batch sees the same sequences with the same masks (rank r of 2 takes the r-th half of each double
# batch; masks are a hash of the sequence and a counter), so its curve must follow the two-process
# run's, whose gradients all_reduce averages. The only difference is the loss normalisation: each
# rank averages over its own masked tokens.

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    from workbench.training.corpus import Corpus
    from workbench.training.pretrain import PretrainConfig, pretrain
    texts, root, cache, config = sys.argv[1:5]
    corpus = Corpus.from_texts(json.load(open(texts)), name="pydoc")
    pretrain(corpus, config=PretrainConfig.from_dict(json.loads(config)), root=root,
             cache_dir=cache)
""")


@pytest.mark.usefixtures("one_torch_thread")
def test_two_processes_follow_one_process_with_twice_the_batch(small_corpus, tmp_path):
    config = _tiny(max_steps=12, eval_every=6, batch_size=4, learning_rate=3e-3, dropout=0.0)
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(list(small_corpus.texts())))
    cache, root = tmp_path / "cache", tmp_path / "runs2"  # a fresh cache: both ranks need it
    run_two_processes(SCRIPT, [texts, root, cache, json.dumps(config.to_dict())], tmp_path)

    (folder,) = [p for p in root.iterdir() if p.is_dir()]  # rank 0 alone wrote a run
    two = Run.open(folder)
    one = pretrain(small_corpus, config=config.replace(batch_size=8), root=tmp_path / "runs1",
                   cache_dir=cache)
    assert two.status == "completed" and two.summary["steps"] == 12
    assert two.summary["tokens_seen"] == one.summary["tokens_seen"]
    a = two.metrics("step").set_index("step")["loss"]  # rank 0's half of each batch
    b = one.metrics("step").set_index("step")["loss"]
    assert a.index.tolist() == b.index.tolist() == list(range(1, 13))
    # same weights at every step => the eval losses agree; a missing all_reduce would drift
    ea = two.metrics("eval").set_index("step")["eval_loss"]
    eb = one.metrics("eval").set_index("step")["eval_loss"]
    assert ea.index.tolist() == eb.index.tolist() == [0, 6, 12]
    assert ea.loc[0] == pytest.approx(eb.loc[0], abs=1e-6)  # same initial weights
    assert ea.loc[12] == pytest.approx(eb.loc[12], abs=0.02)
    assert ea.loc[12] < ea.loc[0] - 0.3
    assert wb.load(two, device="cpu").kind == "mlm"


def test_static_shape_head_gives_the_exact_loss_and_gradients(tokenizer, tables, batch):
    """Oracle: the head on exactly the selected rows (boolean index). The static head runs on
    `head_capacity` rows (selected first, the rest ignored) and must give the same loss and
    gradients; with too small a capacity it counts the positions it leaves out."""
    from workbench.training.pretrain import MaskedLM, build_model, head_capacity

    ids, rows = batch
    masker = Masker(tables, seed=3)
    inputs, labels = masker(ids, rows, epoch=0, draw=0)
    model = build_model(_tiny(vocab_size=len(tokenizer), seq_len=ids.shape[1]), tokenizer)
    capacity = head_capacity(*ids.shape, 0.15, whole_word=False)
    n = int((labels != IGNORE_INDEX).sum())
    assert n < capacity <= ids.numel() and capacity % 64 == 0
    results = []
    for mlm in (MaskedLM(model), MaskedLM(model, capacity)):
        model.zero_grad()
        loss, logits, targets = mlm(inputs, ids != tokenizer.pad_token_id, labels)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
        assert int(mlm.overflow(labels)) == 0 and int((targets != IGNORE_INDEX).sum()) == n
    (exact, g_exact), (static, g_static) = results
    assert static == pytest.approx(float(exact), rel=1e-5)
    for a, b in zip(g_exact, g_static):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert int(MaskedLM(model, n - 5).overflow(labels)) == 5


def test_model_flops_count_the_head_only_where_it_runs():
    """6 FLOPs per dense weight per token, by hand for a 2-layer model, + attention + the head."""
    from workbench.training.pretrain import model_flops_per_token

    cfg = PretrainConfig(num_layers=2, hidden_size=8, num_heads=2, intermediate_size=32, seq_len=16)
    encoder = 2 * (8 * 24 + 8 * 8 + 8 * 32 + 32 * 8)     # QKV, output, FFN in and out (weights)
    attention = 2 * 3 * (2 * 16 * 8 + 2 * 16 * 8)       # QK^T and AV, forward + backward
    head = 8 * 8 + 8 * 100                              # dense transform + decoder (weights)
    assert model_flops_per_token(cfg, 100, 1.0) == 6 * encoder + attention + 6 * head
    assert model_flops_per_token(cfg, 100, 0.15) == pytest.approx(6 * encoder + attention + 0.9 * head)
