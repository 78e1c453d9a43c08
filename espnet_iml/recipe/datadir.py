"""Kaldi data directories: validate, combine and fix them (no Kaldi needed).

    python -m espnet_iml.recipe.datadir validate DIR [DIR ...] [--no-feats] [--no-text]
    python -m espnet_iml.recipe.datadir combine OUT IN [IN ...]
    python -m espnet_iml.recipe.datadir fix DIR

A data directory holds per-utterance files (wav.scp, text, utt2spk, and optionally
feats.scp, utt2num_samples, utt2num_frames, feats_shape, utt2dur), spk2utt (the inverse of
utt2spk) and optionally spk2gender. Every file is sorted by its first field in C-locale
order, has no duplicate keys, and all per-utterance files hold the same utterances.
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from espnet_iml.recipe import kvfile
from espnet_iml.recipe.common import RecipeError, log, run_cli

TOOL = "datadir"
# Per-utterance files this module knows (kept through combine and fix).
UTT_FILES = ("wav.scp", "text", "utt2spk", "feats.scp", "utt2num_samples", "utt2num_frames",
             "feats_shape", "utt2dur")
# Per-speaker files besides spk2utt.
SPK_FILES = ("spk2gender",)
Files = Dict[str, Dict[str, str]]
# Per-utterance length files: an utterance whose length is 0 has nothing to train or decode on.
LENGTH_FILES = ("utt2num_samples", "utt2num_frames", "feats_shape", "utt2dur")
ZERO_LENGTH_HINT = "zero-length utterances must be removed ('datadir fix' does)"


def present(d: Path) -> List[str]:
    """Known per-utterance and per-speaker files present in ``d``."""
    return [n for n in UTT_FILES + SPK_FILES if (Path(d) / n).is_file()]


def load(d: Path, problems: Optional[List[str]] = None) -> Files:
    """The known files of ``d`` (without spk2utt, which is derived from utt2spk)."""
    d = Path(d)
    if not d.is_dir():
        raise RecipeError(f"data directory {d} does not exist")
    return {n: kvfile.read_dict(d / n, problems) for n in present(d)}


def write(d: Path, files: Mapping[str, Mapping[str, str]]) -> None:
    """Write ``files`` (sorted, atomically) and spk2utt from utt2spk into ``d``.

    Known files of ``d`` not in ``files`` are removed so that what remains is consistent.
    """
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    for name in UTT_FILES + SPK_FILES:
        if name in files:
            kvfile.write_dict(d / name, files[name])
        else:
            (d / name).unlink(missing_ok=True)
    if "utt2spk" in files:
        kvfile.write_spk2utt(d / "spk2utt", files["utt2spk"])
    else:
        (d / "spk2utt").unlink(missing_ok=True)


def restrict(files: Mapping[str, Mapping[str, str]], keep) -> Files:
    """``files`` limited to the utterances in ``keep`` (and the speakers they use)."""
    keep = set(keep)
    out: Files = {n: {k: v for k, v in files[n].items() if k in keep}
                  for n in files if n in UTT_FILES}
    speakers = set(out.get("utt2spk", {}).values())
    for n in SPK_FILES:
        if n in files:
            out[n] = {k: v for k, v in files[n].items() if k in speakers}
    return out


# ---------------------------------------------------------------------------------------
# validate

def _check_order(path: Path, entries: Sequence[kvfile.Entry], errors: List[str]) -> None:
    seen: Dict[str, int] = {}
    prev: Optional[kvfile.Entry] = None
    for e in entries:
        if e.key in seen:
            errors.append(f"{path} line {e.lineno}: duplicate key {e.key} (first at line {seen[e.key]})")
        elif prev is not None and e.key < prev.key:
            errors.append(f"{path} line {e.lineno}: key {e.key} comes after {prev.key} "
                          "(expected sorted keys, C locale); run 'datadir fix'")
        seen.setdefault(e.key, e.lineno)
        prev = e


def zero_length(name: str, value: str) -> bool:
    """True when ``value`` of length file ``name`` says the utterance is empty (0 samples,
    0 frames, '0,<dim>' or 0 seconds); malformed values are not zero-length (they are
    reported as malformed)."""
    first = value.split(",")[0] if name == "feats_shape" else value
    try:
        return float(first) == 0
    except ValueError:
        return False


def _check_values(name: str, path: Path, entries: Sequence[kvfile.Entry], errors: List[str],
                  check_files: bool) -> None:
    missing_targets: Dict[str, int] = {}
    for e in entries:
        v = e.value
        where = f"{path} line {e.lineno}"
        if v == "":
            what = "a transcript" if name == "text" else "a value"
            errors.append(f"{where}: {e.key} has no value (expected '{e.key} <{what}>')"
                          + ("; empty transcripts must be removed ('datadir fix' does)" if name == "text" else ""))
            continue
        if name in LENGTH_FILES and zero_length(name, v):
            errors.append(f"{where}: {e.key} has length {v!r}; {ZERO_LENGTH_HINT}")
        elif name in ("utt2num_samples", "utt2num_frames"):
            if not v.isdigit() or int(v) <= 0:
                errors.append(f"{where}: expected a positive integer, got {v!r}")
        elif name == "utt2dur":
            try:
                ok = float(v) > 0
            except ValueError:
                ok = False
            if not ok:
                errors.append(f"{where}: expected a positive duration in seconds, got {v!r}")
        elif name == "feats_shape":
            parts = v.split(",")
            if len(parts) < 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
                errors.append(f"{where}: expected '<frames>,<dim>' (positive integers), got {v!r}")
        elif name == "utt2spk":
            if " " in v or "\t" in v:
                errors.append(f"{where}: expected one speaker id, got {v!r}")
        elif name in ("wav.scp", "feats.scp") and check_files:
            if name == "wav.scp":
                if v.endswith("|"):
                    continue
                target = v
            else:
                target = v.rsplit(":", 1)[0] if ":" in v and v.rsplit(":", 1)[1].isdigit() else v
            if target not in missing_targets and not Path(target).exists():
                missing_targets[target] = e.lineno
                errors.append(f"{where}: {'audio' if name == 'wav.scp' else 'feature'} file {target} does not exist")


def validate(d: Path, feats: bool = True, text: bool = True, check_files: bool = True,
             ) -> Tuple[List[str], List[str], Dict[str, int]]:
    """Errors, warnings and counts (utterances, speakers) of data directory ``d``.

    ``feats``: check feats.scp and its companions when present (False: ignore them).
    ``text``: require text. One of wav.scp and feats.scp is required.
    """
    d = Path(d)
    errors: List[str] = []
    warnings: List[str] = []
    if not d.is_dir():
        return [f"data directory {d} does not exist"], warnings, {}
    required = ["utt2spk", "spk2utt"] + (["text"] if text else [])
    for n in required:
        if not (d / n).is_file():
            errors.append(f"{d}/{n} is missing (a data directory needs {', '.join(required)} "
                          "and wav.scp or feats.scp)")
    if not (d / "wav.scp").is_file() and not (feats and (d / "feats.scp").is_file()):
        errors.append(f"{d} has neither wav.scp nor feats.scp (expected at least one)")
    names = [n for n in UTT_FILES if (d / n).is_file()]
    if not feats:
        names = [n for n in names if n not in ("feats.scp", "utt2num_frames", "feats_shape")]
    entries: Dict[str, List[kvfile.Entry]] = {}
    for n in names + [n for n in ("spk2utt",) + SPK_FILES if (d / n).is_file()]:
        path = d / n
        raw = path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            errors.append(f"{path}: the last line does not end with a newline")
        entries[n] = kvfile.read_entries(path, errors)
        _check_order(path, entries[n], errors)
        if n in UTT_FILES:
            _check_values(n, path, entries[n], errors, check_files)
    # The same utterances in every per-utterance file; utt2spk is the reference.
    ref_name = "utt2spk" if "utt2spk" in entries else (names[0] if names else None)
    counts: Dict[str, int] = {}
    if ref_name is not None:
        ref = {e.key for e in entries[ref_name]}
        counts["utterances"] = len(ref)
        for n in names:
            if n == ref_name:
                continue
            keys = {e.key for e in entries[n]}
            for e in entries[n]:
                if e.key not in ref:
                    errors.append(f"{d / n} line {e.lineno}: utterance {e.key} is not in {ref_name}")
            absent = sorted(ref - keys)
            if absent:
                more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
                errors.append(f"{d / n}: {len(absent)} utterance(s) of {ref_name} missing "
                              f"({', '.join(absent[:3])}{more}); run 'datadir fix' to keep only complete ones")
        if not ref:
            errors.append(f"{d / ref_name}: no utterances")
    if "utt2spk" in entries:
        utt2spk = {e.key: e.value for e in entries["utt2spk"]}
        counts["speakers"] = len(set(utt2spk.values()))
        expected = kvfile.spk2utt_of(utt2spk)
        if "spk2utt" in entries:
            got = {e.key: e for e in entries["spk2utt"]}
            for spk, e in got.items():
                if spk not in expected:
                    errors.append(f"{d}/spk2utt line {e.lineno}: speaker {spk} has no utterance in utt2spk")
                elif e.value.split() != expected[spk]:
                    errors.append(f"{d}/spk2utt line {e.lineno}: the utterances of {spk} differ from "
                                  "utt2spk (expected the sorted list of its utterances); run 'datadir fix'")
            for spk in expected:
                if spk not in got:
                    errors.append(f"{d}/spk2utt: speaker {spk} of utt2spk is missing; run 'datadir fix'")
        by_spk = sorted(utt2spk, key=lambda u: (utt2spk[u], u))
        if by_spk != sorted(utt2spk):
            warnings.append(f"{d}/utt2spk: sorting by speaker gives another order than sorting by "
                            "utterance (Kaldi wants speaker ids as prefixes of utterance ids; "
                            "ESPnet does not need it)")
        if "spk2gender" in entries:
            for e in entries["spk2gender"]:
                if e.key not in expected:
                    errors.append(f"{d}/spk2gender line {e.lineno}: speaker {e.key} is not in utt2spk")
                elif e.value not in ("m", "f"):
                    errors.append(f"{d}/spk2gender line {e.lineno}: expected m or f, got {e.value!r}")
    return errors, warnings, counts


# ---------------------------------------------------------------------------------------
# fix, combine

def fix(d: Path, backup: bool = True) -> Dict[str, object]:
    """Sort every file, drop malformed lines, duplicate keys, empty transcripts,
    zero-length utterances and utterances missing from any per-utterance file; regenerate
    spk2utt.

    The old files go to ``d/.backup/``. Returns counts for the report.
    """
    d = Path(d)
    problems: List[str] = []
    files = load(d, problems)
    names = [n for n in files if n in UTT_FILES]
    if not names:
        raise RecipeError(f"{d} has none of {', '.join(UTT_FILES)}: nothing to fix")
    dropped: Dict[str, int] = {}
    all_keys = set().union(*(files[n].keys() for n in names))
    keep = set(all_keys)
    for n in names:
        missing = all_keys - files[n].keys()
        if missing:
            dropped[f"missing from {n}"] = len(missing)
        keep &= files[n].keys()
    if "text" in files:
        empty = {k for k in keep if not files["text"][k]}
        if empty:
            dropped["empty transcript in text"] = len(empty)
        keep -= empty
    for n in LENGTH_FILES:
        if n in files:
            zero = {k for k in keep if zero_length(n, files[n][k])}
            if zero:
                dropped[f"zero length in {n}"] = len(zero)
            keep -= zero
    if backup:
        bdir = d / ".backup"
        bdir.mkdir(exist_ok=True)
        for n in present(d) + (["spk2utt"] if (d / "spk2utt").is_file() else []):
            (bdir / n).write_bytes((d / n).read_bytes())
    write(d, restrict(files, keep))
    return {"before": len(all_keys), "kept": len(keep), "dropped": dropped, "problems": problems}


def combine(out: Path, ins: Sequence[Path]) -> Dict[str, object]:
    """Union of the data directories ``ins`` into ``out`` (files present in all of them)."""
    out = Path(out)
    loaded = []
    for d in ins:
        d = Path(d)
        if not (d / "utt2spk").is_file():
            raise RecipeError(f"cannot combine {d}: expected a data directory with utt2spk "
                              f"({d}/utt2spk does not exist)")
        loaded.append((d, load(d)))
    if out.resolve() in {Path(d).resolve() for d, _ in loaded}:
        raise RecipeError(f"the output {out} is also an input; choose another output directory")
    common = [n for n in UTT_FILES + SPK_FILES if all(n in f for _, f in loaded)]
    left_out = [n for n in UTT_FILES + SPK_FILES
                if n not in common and any(n in f for _, f in loaded)]
    merged: Files = {n: {} for n in common}
    origin: Dict[Tuple[str, str], Path] = {}
    identical = 0
    for d, files in loaded:
        for n in common:
            for k, v in files[n].items():
                if k in merged[n]:
                    if merged[n][k] != v:
                        raise RecipeError(f"{d}/{n}: key {k} is also in {origin[(n, k)]}/{n} with "
                                          "another value; ids must be unique across combined sets")
                    identical += n == "utt2spk"
                    continue
                merged[n][k] = v
                origin[(n, k)] = d
    utts = set(merged["utt2spk"])
    for n in common:
        if n in UTT_FILES:
            utts &= merged[n].keys()
    lost = len(merged["utt2spk"]) - len(utts)
    write(out, restrict(merged, utts))
    return {"utterances": len(utts), "left_out_files": left_out, "duplicates": identical,
            "incomplete": lost}


# ---------------------------------------------------------------------------------------
# CLI

def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_iml.recipe.datadir",
        description="Validate, combine and fix Kaldi-style data directories.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check one or more data directories (exit 1 on errors)")
    v.add_argument("dirs", nargs="+", type=Path)
    v.add_argument("--no-feats", "--no_feats", dest="feats", action="store_false",
                   help="ignore feats.scp, utt2num_frames and feats_shape even if present")
    v.add_argument("--no-text", "--no_text", dest="text", action="store_false",
                   help="do not require text")
    v.add_argument("--no-check-files", "--no_check_files", dest="check_files", action="store_false",
                   help="do not check that audio/feature files named in wav.scp/feats.scp exist")
    v.add_argument("--max-errors", "--max_errors", type=int, default=30,
                   help="errors shown per directory (default 30)")
    c = sub.add_parser("combine", help="union of data directories")
    c.add_argument("out", type=Path)
    c.add_argument("ins", nargs="+", type=Path)
    f = sub.add_parser("fix", help="sort and keep only complete utterances (backup in DIR/.backup)")
    f.add_argument("dir", type=Path)
    return p


def _validate_cli(args) -> int:
    bad = 0
    for d in args.dirs:
        errors, warnings, counts = validate(d, args.feats, args.text, args.check_files)
        for w in warnings:
            log(TOOL, f"warning: {w}")
        if errors:
            bad += 1
            print(f"[{TOOL}] {d}: {len(errors)} error(s):", file=sys.stderr)
            for e in errors[: args.max_errors]:
                print(f"  {e}", file=sys.stderr)
            if len(errors) > args.max_errors:
                print(f"  ... and {len(errors) - args.max_errors} more", file=sys.stderr)
        else:
            files = " ".join(n for n in UTT_FILES + ("spk2utt",) + SPK_FILES if (d / n).is_file())
            log(TOOL, f"{d}: OK ({counts.get('utterances', 0)} utterances, "
                      f"{counts.get('speakers', 0)} speakers; {files})")
    if bad:
        raise RecipeError(f"{bad} of {len(args.dirs)} data director{'y' if bad == 1 else 'ies'} invalid (see above)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        if args.cmd == "validate":
            return _validate_cli(args)
        if args.cmd == "combine":
            r = combine(args.out, args.ins)
            if r["left_out_files"]:
                log(TOOL, f"not combined (missing in some inputs): {', '.join(r['left_out_files'])}")
            if r["duplicates"]:
                log(TOOL, f"{r['duplicates']} utterance(s) appeared in several inputs identically; kept once")
            if r["incomplete"]:
                log(TOOL, f"{r['incomplete']} utterance(s) dropped: missing from some combined file")
            log(TOOL, f"combined {len(args.ins)} director{'y' if len(args.ins) == 1 else 'ies'} "
                      f"-> {args.out} ({r['utterances']} utterances)")
            return 0
        r = fix(args.dir)
        for p in r["problems"]:
            log(TOOL, f"dropped line: {p}")
        for why, k in r["dropped"].items():
            log(TOOL, f"dropped {k} utterance(s): {why}")
        log(TOOL, f"fixed {args.dir}: kept {r['kept']} of {r['before']} utterances "
                  f"(old files in {args.dir}/.backup)")
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
