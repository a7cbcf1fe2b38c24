"""The `make demo` main job: run the guided analyses headless and collect their outputs.

Placeholder until the notebooks land: loads the model, writes token and attention tables.
"""

from __future__ import annotations

from pathlib import Path


def run_demo(out: Path, *, model: str = "demo", quick: bool = False) -> Path:
    import tempfile

    from .capture import encode, forward
    from .errors import ModelNotFoundError
    from .models import load

    out.mkdir(parents=True, exist_ok=True)
    try:
        lm = load(model)
    except ModelNotFoundError:
        if model != "demo":
            raise
        from .testing import make_tiny_model

        print("The embedded default model is not built yet: running on a tiny RANDOM model "
              "(its outputs show the pipeline works, not what a trained model knows).")
        lm = load(make_tiny_model(Path(tempfile.mkdtemp()) / "tiny"))
    print(f"Loaded {lm}")
    text = "The quick brown fox jumps over the lazy dog."
    lm.tokens(text).to_frame().to_csv(out / "tokens.csv", index=False)
    batch = encode(lm, [text])
    att = forward(lm, batch, attentions=True).attentions
    print(f"{len(att)} layers of attention, shape {tuple(att[0].shape)}")
    return out
