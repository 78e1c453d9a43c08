"""A clone of the repository refers to nothing outside itself.

Every tracked text file is scanned for references to the development machine's sibling
folder (``../`` + ``shared``), and every relative link in a markdown file must point to a
file or directory inside the repository.
"""

import re
import subprocess
from pathlib import Path
from typing import Iterable, List

ROOT = Path(__file__).resolve().parents[1]
# Written in two parts so that this file does not match itself.
SIBLING = "../" + "shared"
# [text](target) and ![alt](target); the target ends at whitespace or ')'.
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target (reference-style definitions)
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_EXTERNAL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|#|//)")


def tracked_files(root: Path) -> List[Path]:
    """The files git tracks (the contents of a clone)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    return [root / name for name in out.stdout.decode("utf-8").split("\0") if name]


def read_text(path: Path):
    """The file as text, or None for binary files."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def markdown_links(text: str) -> List[str]:
    """Link targets of a markdown text, outside fenced code blocks."""
    text = _FENCE.sub("", text)
    return _INLINE.findall(text) + _REFDEF.findall(text)


def outside_references(root: Path, files: Iterable[Path]) -> List[str]:
    """One message per reference that leaves ``root`` or points nowhere."""
    root = root.resolve()
    problems = []
    for path in files:
        if not path.is_file():
            continue
        text = read_text(path)
        if text is None:
            continue
        rel = path.relative_to(root)
        for lineno, line in enumerate(text.splitlines(), 1):
            if SIBLING in line:
                problems.append(f"{rel}:{lineno}: refers to {SIBLING} (not in a clone)")
        if path.suffix.lower() != ".md":
            continue
        for target in markdown_links(text):
            if _EXTERNAL.match(target):
                continue
            target = target.split("#", 1)[0]
            if not target:
                continue
            dest = (root / target.lstrip("/")) if target.startswith("/") else (path.parent / target)
            dest = dest.resolve()
            if root not in (dest, *dest.parents):
                problems.append(f"{rel}: link {target} leaves the repository")
            elif not dest.exists():
                problems.append(f"{rel}: link {target} points to nothing")
    return problems


def test_checker_finds_planted_references(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "ok [here](b.md) and [web](https://example.org) [top](#x)\n"
        f"bad {SIBLING}/docs/x.md\n[gone](missing.md) ![img](../../etc/passwd)\n"
        "```\n[in code](not/checked.md)\n```\n[ref]: nowhere.md\n")
    (tmp_path / "docs" / "b.md").write_text("fine\n")
    (tmp_path / "run.sh").write_text(f"# see {SIBLING}/stack.md\n")
    (tmp_path / "blob.bin").write_bytes(b"\0" + SIBLING.encode())
    found = outside_references(tmp_path, sorted(tmp_path.rglob("*")))
    assert found == [
        f"docs/a.md:2: refers to {SIBLING} (not in a clone)",
        "docs/a.md: link missing.md points to nothing",
        "docs/a.md: link ../../etc/passwd leaves the repository",
        "docs/a.md: link nowhere.md points to nothing",
        f"run.sh:1: refers to {SIBLING} (not in a clone)",
    ]


def test_repository_refers_to_nothing_outside_itself():
    files = tracked_files(ROOT)
    assert any(f.name == "README.md" for f in files)
    problems = outside_references(ROOT, files)
    assert problems == [], "\n".join(problems)
