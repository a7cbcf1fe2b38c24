"""Universal Dependencies CoNLL-U: the parser behind `read_conll(..., format="conllu")`.

What belongs here: turning CoNLL-U text into one row per *syntactic word* with its gold tree, and
the checks UD's format defines (https://universaldependencies.org/format.html):

- ten tab-separated fields per line; `ID` is an integer (a word), a range `1-2` (a multiword
  token such as "don't" = "do" + "n't": the range line is the surface token, skipped here because
  the tree is over its words) or a decimal `8.1` (an empty node of the enhanced graph: skipped,
  it has no place in the basic tree);
- word IDs run 1..n in order, `HEAD` is 0 (the root) or a word ID of the same sentence, and
  exactly one word of a sentence has `HEAD` 0, and following heads from any word reaches it.

Every error names the line number (1-based, in the file) and what to do. Columns of the frame:
`text_id`, `word_id` (0-based), `word` (FORM), `label` (UPOS, the default probe label), `pos`
(UPOS), `xpos`, `dep_head` (0-based word_id of the head, -1 for the root), `relation` (DEPREL,
subtype kept: `nmod:poss`), and `sent_id` (the `# sent_id` comment, else the sentence number).
"""

from __future__ import annotations

import pandas as pd

from .. import schema as S
from ..errors import InputError

N_FIELDS = 10
COLUMNS = [S.TEXT_ID, S.WORD_ID, S.WORD, S.LABEL, S.POS, S.XPOS, S.DEP_HEAD, S.RELATION,
           S.SENT_ID]


def _check_tree(heads: list[int], first_line: int, sent_id: str) -> None:
    """Exactly one root, and no cycle (every word reaches the root); heads are 1-based, 0 = root."""
    where = f"sentence {sent_id!r} (starting at line {first_line})"
    roots = [i + 1 for i, h in enumerate(heads) if h == 0]
    if len(roots) != 1:
        what = "no word with HEAD 0 (no root)" if not roots else f"{len(roots)} roots (words {roots})"
        raise InputError(f"{where} has {what}; UD requires exactly one root per sentence: fix "
                         "the file or drop the sentence")
    for start in range(1, len(heads) + 1):
        seen, node = set(), start
        while node != 0:
            if node in seen:
                raise InputError(f"{where}: the heads of word {start} form a cycle; UD trees "
                                 "must reach the root from every word")
            seen.add(node)
            node = heads[node - 1]


def _finish(rows: list[tuple], first_line: int, sent_id: str, text_id: int, out: list) -> None:
    heads = [r[3] for r in rows]
    for n, (line, _, _, head, *_rest) in enumerate(rows, 1):
        if head > len(rows):
            raise InputError(f"line {line}: HEAD {head} points past the sentence's {len(rows)} "
                             "words; it must be 0 (root) or a word ID of the same sentence")
    _check_tree(heads, first_line, sent_id)
    for w, (_, form, upos, head, xpos, rel) in enumerate(rows):
        out.append((text_id, w, form, upos, upos, xpos, head - 1, rel, sent_id))


def _word(line_no: int, cols: list[str], expected: int) -> tuple:
    """One word line checked: (line, form, upos, head, xpos, deprel)."""
    if int(cols[0]) != expected:
        raise InputError(f"line {line_no}: word ID {cols[0]} where {expected} was expected; IDs "
                         "must run 1, 2, ... within a sentence")
    form = cols[1]
    if not form or any(c.isspace() for c in form):
        raise InputError(f"line {line_no}: FORM {form!r} is empty or contains whitespace, which "
                         "the word-level features cannot use")
    try:
        head = int(cols[6])
    except ValueError:
        raise InputError(f"line {line_no}: HEAD {cols[6]!r} is not an integer; basic trees need "
                         "an integer HEAD on every word line") from None
    if head < 0:
        raise InputError(f"line {line_no}: HEAD {head} is negative")
    return line_no, form, cols[3], head, cols[4], cols[7]


def parse_conllu(text: str) -> pd.DataFrame:
    """CoNLL-U text -> one row per syntactic word (see the module docstring for the columns)."""
    out: list[tuple] = []
    rows: list[tuple] = []
    sent_id, first_line = None, 0
    lines = text.splitlines()
    for n, raw in enumerate(lines + [""], 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if rows:
                text_id = out[-1][0] + 1 if out else 0
                _finish(rows, first_line, sent_id or str(text_id + 1), text_id, out)
            rows, sent_id = [], None
            continue
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            if key.strip() == "sent_id":
                sent_id = value.strip()
            continue
        cols = line.split("\t")
        if len(cols) != N_FIELDS:
            raise InputError(f"line {n}: {len(cols)} tab-separated field(s), CoNLL-U needs "
                             f"{N_FIELDS} (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC): "
                             f"{line[:60]!r}")
        ident = cols[0]
        if "-" in ident or "." in ident:      # multiword token range / empty node: not a word
            parts = ident.replace(".", "-").split("-")
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise InputError(f"line {n}: ID {ident!r} is neither a word ID, a range 'a-b' "
                                 "nor an empty node 'a.b'")
            continue
        if not ident.isdigit():
            raise InputError(f"line {n}: ID {ident!r} is not an integer word ID")
        if not rows:
            first_line = n
        rows.append(_word(n, cols, len(rows) + 1))
    if not out:
        raise InputError("the CoNLL-U input holds no sentences")
    return pd.DataFrame(out, columns=COLUMNS)
