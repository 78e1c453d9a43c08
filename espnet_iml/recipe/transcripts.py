"""Transcripts of the released corpora as stage 1 reads them: decoding and normalization.

Our policy (ESPnet's recipes assume clean releases and do none of this); every change is
counted per reason by the prep tools:

- Both corpora: Unicode NFKC, which turns full-width letters, digits and punctuation
  (``ＡＢＣ１２３，``) and other compatibility forms into their plain forms.
- LibriSpeech (its released transcripts are upper case, with apostrophes and no other
  punctuation): letters are upper-cased; typographic apostrophes become ``'``; every other
  punctuation mark or symbol becomes a space, so "over, the" stays two words and
  "well-known" becomes "WELL KNOWN"; blanks collapse to one space.
- AiShell-1 (characters are the tokens): all blanks are removed. Punctuation is kept: the
  release has none, and removing Chinese punctuation is not ours to guess.

A line that is not valid UTF-8 is dropped under its own reason; a transcript that is empty
after normalization counts as an empty transcript.
"""

import unicodedata
from pathlib import Path
from typing import Dict, List, Tuple

from espnet_iml.recipe import kvfile
from espnet_iml.recipe.common import Skips, log

NFKC = "full-width or compatibility characters normalized (NFKC)"
UPPER = "lower case made upper case"
PUNCT = "punctuation removed"
BAD_UTF8 = "transcript line not valid UTF-8"
EMPTY = "empty transcript"
_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'"}


def nfkc(text: str, changes: List[str]) -> str:
    out = unicodedata.normalize("NFKC", text)
    if out != text:
        changes.append(NFKC)
    return out


def librispeech(text: str) -> Tuple[str, List[str]]:
    """The transcript as LibriSpeech releases it, and what had to change (reasons)."""
    changes: List[str] = []
    text = nfkc(text, changes)
    upper = text.upper()
    if upper != text:
        changes.append(UPPER)
    chars = []
    for ch in upper:
        ch = _APOSTROPHES.get(ch, ch)
        if ch != "'" and unicodedata.category(ch)[0] in "PS":
            ch = " "
        chars.append(ch)
    out = " ".join("".join(chars).split())
    if out != " ".join(upper.split()):
        changes.append(PUNCT)
    return out, changes


def aishell(text: str) -> Tuple[str, List[str]]:
    """The transcript as characters without blanks, and what had to change (reasons)."""
    changes: List[str] = []
    text = nfkc(text, changes)
    return "".join(text.split()), changes


def read(path: Path, skips: Skips, where: str = "") -> Dict[str, str]:
    """UTTID -> raw text of a transcript file; lines that are not UTF-8 and repeated ids are
    skipped (first kept) with their reasons, other malformed lines are warned about."""
    problems: List[str] = []
    bad: List[Tuple[str, int]] = []
    text: Dict[str, str] = {}
    suffix = f" ({where})" if where else ""
    for e in kvfile.iter_entries(path, problems, bad_utf8=bad):
        if e.key in text:
            skips.add(e.key, f"duplicate transcript line (the first is kept){suffix}")
        else:
            text[e.key] = e.value
    for key, _ in bad:
        skips.add(key, f"{BAD_UTF8}{suffix}")
    for p in problems:
        log("transcripts", f"warning: skipped transcript line: {p}")
    return text
