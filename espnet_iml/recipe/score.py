"""Score hypotheses against references with sclite: CER (char) or WER (word).

    python -m espnet_iml.recipe.score --ref data/test/text --hyp exp/.../decode/test/text \
        --unit char|word --out DIR [--utt2spk FILE] [--non_linguistic_symbols FILE]

sclite does the alignment and the counting. What this tool adds is what sclite cannot do:
it writes sclite's trn files from Kaldi text files (--unit char removes all whitespace and
makes each character a token, as for AiShell; --unit word splits on whitespace; tokens that
sclite's trn reader would take as markup are escaped), gives references without a hypothesis
an empty hypothesis (all deletions), and turns sclite's Sum row into DIR/score.json for the
results table. sclite compares case-insensitively (its default).

DIR: ref.trn, hyp.trn, result.txt (sclite's full report, ``-o all``), score.json (n_snt, n_ref,
and corr, sub, del, ins, err, s_err in percent, plus the counts n_corr, ... n_s_err).
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_iml.recipe import kvfile
from espnet_iml.recipe.common import PRODUCERS, RecipeError, log, need_file, run_cli

TOOL = "score"
# Characters that sclite's trn reader treats specially ({a / b} alternations, (optional)
# words, @ null words, ...): tokens holding any of them are written escaped.
_SPECIAL = set('(){}[]/@;*%<>"#|\\~')
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# sclite's summary: | Sum | snt wrd | corr sub del ins err s.err | (counts, with -o all: "sum")
_SUM = re.compile(r"^\s*\|\s*Sum\s*\|\s*(\d+)\s+(\d+)\s*\|\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\|",
                  re.M)
SCLITE_LOCATIONS = (["sctk", "sclite"], ["sclite"], ["/usr/lib/sctk/bin/sclite"])


def tokens_of(text: str, unit: str, nlsyms: Sequence[str]) -> List[str]:
    for sym in nlsyms:
        text = text.replace(sym, " ")
    if unit == "char":
        return [ch for ch in text if not ch.isspace()]
    return text.split()


def trn_token(token: str) -> str:
    """The token as written to a trn file (escaped when sclite would read it specially)."""
    if any(ch in _SPECIAL for ch in token):
        # Lower-cased first: sclite folds case, and must see A( and a( as the same word.
        return "#x" + token.translate(_ASCII_LOWER).encode("utf-8").hex()
    return token


def find_sclite() -> Optional[List[str]]:
    """The command that runs sclite (Debian's sctk puts it off PATH, behind `sctk sclite`)."""
    for cmd in SCLITE_LOCATIONS:
        if shutil.which(cmd[0]) or Path(cmd[0]).is_file():
            return cmd
    return None


def run_sclite(cmd: List[str], out: Path) -> str:
    """sclite's full report on out/ref.trn and out/hyp.trn."""
    proc = subprocess.run(cmd + ["-r", "ref.trn", "trn", "-h", "hyp.trn", "trn", "-i", "rm",
                                 "-o", "all", "stdout"],
                          cwd=out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    report = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0 or not _SUM.search(report):
        err = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise RecipeError(f"sclite failed (exit {proc.returncode}): {err or report[-500:]}")
    return report


def pct(x: int, n: int) -> float:
    return round(100.0 * x / n, 2) if n else 0.0


def score(ref_path: Path, hyp_path: Path, unit: str, out: Path, utt2spk_path: Optional[Path] = None,
          nlsyms: Sequence[str] = ()) -> Dict[str, object]:
    need_file(ref_path, "reference transcripts", PRODUCERS["data"])
    if not hyp_path.is_file():
        raise RecipeError(f"hypothesis file {hyp_path} does not exist: it is produced by "
                          f"{PRODUCERS['hyp']}; run that first")
    if hyp_path.stat().st_size == 0:
        raise RecipeError(f"hypothesis file {hyp_path} is empty: decoding produced no "
                          f"hypotheses; check the decoding logs ({PRODUCERS['hyp']})")
    cmd = find_sclite()
    if cmd is None:
        raise RecipeError("sclite not found (Debian/Ubuntu: apt-get install sctk; ./setup.sh does it)")
    refs = kvfile.read_dict(ref_path)
    hyps = kvfile.read_dict(hyp_path)
    if not refs:
        raise RecipeError(f"{ref_path} holds no references")
    if utt2spk_path is None and (ref_path.parent / "utt2spk").is_file():
        utt2spk_path = ref_path.parent / "utt2spk"
    utt2spk = kvfile.read_dict(utt2spk_path) if utt2spk_path is not None else {}
    missing = sorted(set(refs) - set(hyps))
    extra = sorted(set(hyps) - set(refs))
    if len(missing) == len(refs):
        raise RecipeError(f"no hypothesis of {hyp_path} matches an utterance of {ref_path} "
                          f"(e.g. hyp {next(iter(hyps))} vs ref {next(iter(refs))}): wrong files?")
    out.mkdir(parents=True, exist_ok=True)
    ref_trn, hyp_trn = [], []
    for uid in sorted(refs):
        trn_id = f" ({utt2spk.get(uid, uid)}-{uid})\n"
        for lines, text in ((ref_trn, refs[uid]), (hyp_trn, hyps.get(uid, ""))):
            lines.append(" ".join(trn_token(t) for t in tokens_of(text, unit, nlsyms)) + trn_id)
    kvfile.atomic_write_text(out / "ref.trn", "".join(ref_trn))
    kvfile.atomic_write_text(out / "hyp.trn", "".join(hyp_trn))
    report = run_sclite(cmd, out)
    n_snt, n_ref, corr, sub, dele, ins, err, s_err = (int(x) for x in _SUM.search(report).groups())
    notes = []
    if missing:
        notes.append(f"{len(missing)} reference(s) without hypothesis, counted as deletions: "
                     + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    if extra:
        notes.append(f"{len(extra)} hypothesis(es) without reference, ignored: "
                     + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))
    head = (f"{'CER' if unit == 'char' else 'WER'} by sclite; unit: "
            f"{'characters, spaces removed' if unit == 'char' else 'words'}\nref: {ref_path}\n"
            f"hyp: {hyp_path}\n" + "".join(n + "\n" for n in notes))
    kvfile.atomic_write_text(out / "result.txt", head + "\n" + report)
    result = {
        "n_snt": n_snt, "n_ref": n_ref,
        "corr": pct(corr, n_ref), "sub": pct(sub, n_ref), "del": pct(dele, n_ref),
        "ins": pct(ins, n_ref), "err": pct(err, n_ref), "s_err": pct(s_err, n_snt),
        "n_corr": corr, "n_sub": sub, "n_del": dele, "n_ins": ins, "n_err": err, "n_s_err": s_err,
        "unit": unit, "metric": "cer" if unit == "char" else "wer",
        "n_missing_hyp": len(missing), "n_extra_hyp": len(extra),
        "ref": str(ref_path), "hyp": str(hyp_path),
    }
    kvfile.atomic_write_text(out / "score.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    for n in notes:
        log(TOOL, n)
    return result


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m espnet_iml.recipe.{TOOL}",
        description="CER/WER with sclite; writes sclite's report and a score.json.",
    )
    p.add_argument("--ref", type=Path, required=True, help="reference Kaldi text (UTTID transcript)")
    p.add_argument("--hyp", type=Path, required=True, help="hypothesis Kaldi text from decoding")
    p.add_argument("--unit", choices=("char", "word"), required=True,
                   help="char: CER on characters, spaces removed; word: WER")
    p.add_argument("--out", type=Path, required=True, help="directory for ref.trn, hyp.trn, result.txt, score.json")
    p.add_argument("--utt2spk", type=Path, default=None,
                   help="speakers for the trn ids (default: utt2spk next to --ref if present)")
    p.add_argument("--non_linguistic_symbols", default=None,
                   help="file of symbols removed from ref and hyp before scoring ('none': no file)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        nlsyms: List[str] = []
        if args.non_linguistic_symbols not in (None, "", "none"):
            path = Path(args.non_linguistic_symbols)
            if not path.is_file():
                raise RecipeError(f"--non_linguistic_symbols {path} does not exist")
            nlsyms = [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
        r = score(args.ref, args.hyp, args.unit, args.out, args.utt2spk, nlsyms)
        metric = "CER" if args.unit == "char" else "WER"
        log(TOOL, f"{metric} {r['err']:.2f} % ({r['n_snt']} utterances, {r['n_ref']} {args.unit}s: "
                  f"sub {r['n_sub']}, del {r['n_del']}, ins {r['n_ins']}) -> {args.out}/result.txt")
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
