"""Readable tokens: no BPE markers, specials flagged, word spans from offsets, pairs marked."""

from __future__ import annotations


def test_tokens_have_no_bpe_markers_and_specials_are_flagged(tiny_lm):
    view = tiny_lm.tokens("The pizzeria was closed, unfortunately.")
    assert view.tokens[0] == "<s>" and view.tokens[-1] == "</s>"
    assert view.special[0] and view.special[-1] and not any(view.special[1:-1])
    assert not any("Ġ" in t for t in view.tokens)
    assert len(view.tokens) == len(view.ids) == len(view.raw)


def test_word_spans_cover_every_non_special_token_once(tiny_lm):
    text = "Unbelievably, the pizzeria reopened."
    view = tiny_lm.tokens(text)
    covered = sorted(p for span in view.word_spans for p in span)
    assert covered == [i for i, s in enumerate(view.special) if not s]
    assert view.words == ["Unbelievably", ",", "the", "pizzeria", "reopened", "."]
    # a word split into pieces: the first piece starts the word, the rest show a · prefix
    long_word = view.word_spans[view.words.index("pizzeria")]
    assert len(long_word) > 1
    assert view.word_start[long_word[0]] and not view.word_start[long_word[1]]
    assert view.display[long_word[1]].startswith("·")
    assert "".join(view.tokens[p] for p in long_word) == "pizzeria"


def test_mask_token_is_special_and_readable(tiny_lm):
    view = tiny_lm.tokens("The capital of France is <mask>.")
    i = view.tokens.index("<mask>")
    assert view.special[i] and view.ids[i] == tiny_lm.tokenizer.mask_token_id


def test_sentence_pairs_are_marked(tiny_lm):
    view = tiny_lm.tokens("First sentence.", "Second one.")
    # RoBERTa pairs: <s> A </s></s> B </s>
    assert view.tokens.count("</s>") == 3
    first_b = view.segment.index(1)
    assert view.tokens[first_b - 1] == "</s>" and view.tokens[first_b - 2] == "</s>"
    assert view.words[-2:] == ["one", "."]


def test_html_like_text_stays_text(tiny_lm):
    view = tiny_lm.tokens("<script>alert(1)</script>")
    assert "".join(view.tokens[1:-1]) == "<script>alert(1)</script>"


def test_one_display_convention_for_subword_pieces(tiny_lm):
    """tokens.display_token: continuation pieces start with '·', word starts are bare, a
    whitespace-only piece is '␣'; vocabulary tokens follow it through their leading space."""
    from workbench.tokens import display_token, display_vocab_token, plain_token

    view = tiny_lm.tokens("The pizzeria was closed.")
    span = view.word_spans[view.words.index("pizzeria")]
    shown = [view.display[p] for p in span]
    assert not shown[0].startswith("·") and all(s.startswith("·") for s in shown[1:])
    assert "".join(plain_token(s) for s in shown) == "pizzeria"
    assert display_token(" ", continues=True) == "␣"
    assert display_vocab_token(" Paris") == "Paris" and display_vocab_token("Paris") == "·Paris"
    assert display_vocab_token("<mask>") == "<mask>" and plain_token("·") == "·"
