"""Kaldi-style key-value files (wav.scp, text, utt2spk, spk2utt, feats.scp, ...).

One entry a line: ``KEY VALUE`` where KEY runs up to the first space or tab and VALUE is the
rest (leading and trailing blanks removed; it may be empty). Files are written sorted by key
in C-locale order (Python's code-point order of ``str`` is the byte order of UTF-8) and
atomically (a temporary file in the same directory, then a rename), so an interrupted tool
never leaves half a file behind.
"""

import os
import re
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Tuple, Union

from espnet_iml.recipe.common import RecipeError

PathLike = Union[str, Path]
# Only ASCII space and tab separate fields (Python's str.split() would also split on
# U+3000 and other Unicode blanks, which can occur inside Chinese transcripts).
_LINE = re.compile(r"([^ \t]+)(?:[ \t]+(.*?))?[ \t]*")


class Entry(NamedTuple):
    lineno: int
    key: str
    value: str


class FormatError(RecipeError):
    """A key-value file that does not follow the format; the message names file and line."""


def iter_entries(path: PathLike, problems: Optional[List[str]] = None,
                 bad_utf8: Optional[List[Tuple[str, int]]] = None) -> Iterator[Entry]:
    """Entries of ``path`` in file order.

    Malformed lines (not UTF-8, carriage returns, empty lines) raise FormatError naming the
    file and line, or, when a ``problems`` list is given, are described there and skipped.
    With a ``bad_utf8`` list, lines that are not UTF-8 go there instead, as (key, line
    number), the key decoded with replacement characters.
    """
    path = Path(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            problem = None
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if bad_utf8 is not None:
                    bad_utf8.append(((raw.split() or [b"?"])[0].decode("utf-8", "replace"), lineno))
                    continue
                line, problem = "", f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
            if problem is None:
                line = line[:-1] if line.endswith("\n") else line
                if "\r" in line:
                    problem = "carriage return (DOS line ending); convert the file with dos2unix"
                elif not line.strip(" \t"):
                    problem = "empty line; expected 'KEY VALUE'"
            if problem is None:
                m = _LINE.fullmatch(line.lstrip(" \t"))
                if m is None:  # pragma: no cover - the pattern matches any non-blank line
                    problem = "cannot be parsed as 'KEY VALUE'"
            if problem is not None:
                msg = f"{path} line {lineno}: {problem}"
                if problems is None:
                    raise FormatError(msg)
                problems.append(msg)
                continue
            yield Entry(lineno, m.group(1), m.group(2) or "")


def read_entries(path: PathLike, problems: Optional[List[str]] = None) -> List[Entry]:
    return list(iter_entries(path, problems))


def read_dict(
    path: PathLike, problems: Optional[List[str]] = None, allow_empty: bool = True
) -> Dict[str, str]:
    """KEY -> VALUE of ``path``; duplicates (and, unless allowed, empty values) are errors.

    With a ``problems`` list the offending lines are described there instead of raising,
    and the first occurrence of a duplicated key is kept.
    """
    out: Dict[str, str] = {}
    first: Dict[str, int] = {}
    for e in iter_entries(path, problems):
        msg = None
        if e.key in out:
            msg = f"{path} line {e.lineno}: duplicate key {e.key} (first at line {first[e.key]})"
        elif not allow_empty and not e.value:
            msg = f"{path} line {e.lineno}: key {e.key} has no value; expected 'KEY VALUE'"
        if msg is not None:
            if problems is None:
                raise FormatError(msg)
            problems.append(msg)
            continue
        out[e.key] = e.value
        first[e.key] = e.lineno
    return out


def format_lines(items: Iterable[Tuple[str, str]], sort: bool = True) -> str:
    items = sorted(items, key=lambda kv: kv[0]) if sort else list(items)
    return "".join(f"{k} {v}\n" if v != "" else f"{k}\n" for k, v in items)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_dict(path: PathLike, data: Union[Mapping[str, str], Iterable[Tuple[str, str]]],
               sort: bool = True) -> None:
    """Write KEY VALUE lines (sorted by key unless ``sort`` is False), atomically."""
    items = data.items() if isinstance(data, Mapping) else data
    atomic_write_text(path, format_lines(items, sort))


def spk2utt_of(utt2spk: Mapping[str, str]) -> Dict[str, List[str]]:
    """Speaker -> its utterances, both sorted (the inverse of utt2spk)."""
    out: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return dict(sorted(out.items()))


def write_spk2utt(path: PathLike, utt2spk: Mapping[str, str]) -> None:
    write_dict(path, ((s, " ".join(u)) for s, u in spk2utt_of(utt2spk).items()), sort=False)
