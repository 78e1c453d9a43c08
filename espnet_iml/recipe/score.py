"""Score hypotheses against references: CER (char) or WER (word), with sclite and in Python.

    python -m espnet_iml.recipe.score --ref data/test/text --hyp exp/.../decode/test/text \
        --unit char|word --out DIR [--utt2spk FILE] [--non_linguistic_symbols FILE]

Tokens: --unit char removes all whitespace and makes every character a token (AiShell CER);
--unit word splits on whitespace (WER). Comparison is case-insensitive for ASCII letters, as
sclite's default.

Writes DIR/ref.trn and DIR/hyp.trn (``tokens (spk-uttid)``), runs
``sctk sclite -r ref.trn trn -h hyp.trn trn -i rm -o all stdout`` and computes the same
alignment in Python (Levenshtein with sclite's weights: substitution 4, insertion 3,
deletion 3, and its tie-breaking), then checks that both agree utterance by utterance.
DIR/result.txt: a sclite-style summary (``| SPKR | # Snt # Wrd | Corr Sub Del Ins Err S.Err |``,
percentages), the counts, and sclite's full report. DIR/score.json: n_snt, n_ref and corr,
sub, del, ins, err, s_err in percent, plus the raw counts n_corr, n_sub, n_del, n_ins,
n_err, n_s_err.

References without a hypothesis count as all deletions (reported); hypotheses without a
reference are ignored (reported). An empty or missing hypothesis file is an error.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from espnet_iml.recipe import kvfile
from espnet_iml.recipe.common import PRODUCERS, RecipeError, log, need_file, run_cli

TOOL = "score"
W_SUB, W_INS, W_DEL = 4, 3, 3
_CORR, _SUB, _INS, _DEL = 0, 1, 2, 3
# Characters that sclite's trn reader treats specially ({a / b} alternations, (optional)
# words, @ null words, ...): tokens holding any of them are written escaped.
_SPECIAL = set('(){}[]/@;*%<>"#|\\~')
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Counts(NamedTuple):
    corr: int
    sub: int
    dele: int
    ins: int

    @property
    def err(self) -> int:
        return self.sub + self.dele + self.ins

    def __add__(self, other):  # type: ignore[override]
        return Counts(*(a + b for a, b in zip(self, other)))


def fold(token: str) -> str:
    """sclite compares case-insensitively, ASCII letters only."""
    return token.translate(_ASCII_LOWER)


def align(ref: Sequence[str], hyp: Sequence[str]) -> Tuple[Counts, List[Tuple[str, str, str]]]:
    """Weighted Levenshtein alignment as sclite does it: counts and (op, ref, hyp) pairs.

    Per cell, a substitution or match wins ties, then deletion before insertion.
    """
    r = [fold(t) for t in ref]
    h = [fold(t) for t in hyp]
    n, m = len(r), len(h)
    back = [bytearray(m + 1) for _ in range(n + 1)]
    prev = [W_INS * j for j in range(m + 1)]
    for j in range(1, m + 1):
        back[0][j] = _INS
    for i in range(1, n + 1):
        cur = [0] * (m + 1)
        cur[0] = prev[0] + W_DEL
        row = back[i]
        row[0] = _DEL
        ri = r[i - 1]
        for j in range(1, m + 1):
            same = ri == h[j - 1]
            s = prev[j - 1] + (0 if same else W_SUB)
            d = prev[j] + W_DEL
            a = cur[j - 1] + W_INS
            if s <= d and s <= a:
                cur[j], row[j] = s, (_CORR if same else _SUB)
            elif d < a:
                cur[j], row[j] = d, _DEL
            else:
                cur[j], row[j] = a, _INS
        prev = cur
    ops: List[Tuple[str, str, str]] = []
    c = [0, 0, 0, 0]
    i, j = n, m
    while i > 0 or j > 0:
        op = back[i][j]
        c[op] += 1
        if op in (_CORR, _SUB):
            ops.append(("C" if op == _CORR else "S", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif op == _DEL:
            ops.append(("D", ref[i - 1], ""))
            i -= 1
        else:
            ops.append(("I", "", hyp[j - 1]))
            j -= 1
    ops.reverse()
    return Counts(c[_CORR], c[_SUB], c[_DEL], c[_INS]), ops


def tokens_of(text: str, unit: str, nlsyms: Sequence[str]) -> List[str]:
    for sym in nlsyms:
        text = text.replace(sym, " ")
    if unit == "char":
        return [ch for ch in text if not ch.isspace()]
    return text.split()


def trn_token(token: str) -> str:
    """The token as written to a trn file (escaped when sclite would read it specially)."""
    if any(ch in _SPECIAL for ch in token):
        return "#x" + fold(token).encode("utf-8").hex()
    return token


def find_sclite() -> Optional[List[str]]:
    if shutil.which("sctk"):
        return ["sctk", "sclite"]
    if shutil.which("sclite"):
        return ["sclite"]
    if Path("/usr/lib/sctk/bin/sclite").is_file():
        return ["/usr/lib/sctk/bin/sclite"]
    return None


_SUM = re.compile(r"^\s*\|\s*Sum\s*\|\s*(\d+)\s+(\d+)\s*\|\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\|",
                  re.M)
_UTT = re.compile(r"^id: \((.*)\)\s*\nScores: \(#C #S #D #I\) (\d+) (\d+) (\d+) (\d+)", re.M)


def run_sclite(cmd: List[str], out: Path) -> Tuple[str, Tuple[int, ...], Dict[str, Counts]]:
    """sclite's report, its Sum row (snt, wrd, C, S, D, I, Err, S.Err) and per-id counts."""
    proc = subprocess.run(cmd + ["-r", "ref.trn", "trn", "-h", "hyp.trn", "trn", "-i", "rm",
                                 "-o", "all", "stdout"],
                          cwd=out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    report = proc.stdout.decode("utf-8", "replace")
    m = _SUM.search(report)
    if proc.returncode != 0 or m is None:
        err = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise RecipeError(f"sclite failed (exit {proc.returncode}): {err or report[-500:]}")
    per_utt = {uid: Counts(int(c), int(s), int(d), int(i)) for uid, c, s, d, i in _UTT.findall(report)}
    return report, tuple(int(x) for x in m.groups()), per_utt


def pct(x: int, n: int) -> float:
    return round(100.0 * x / n, 2) if n else 0.0


def summary_table(n_snt: int, n_ref: int, tot: Counts, s_err: int, name: str) -> str:
    """sclite's summary layout: a percentage row (Sum/Avg) and a count row (Sum)."""
    head = "| SPKR   | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |"
    sep = "|--------+-------------+-----------------------------------------|"

    def ratio(x: int, n: int) -> float:
        return 100.0 * x / n if n else 0.0

    p = [ratio(v, n_ref) for v in (tot.corr, tot.sub, tot.dele, tot.ins, tot.err)] + [ratio(s_err, n_snt)]
    row = f"| Sum/Avg|{n_snt:5d} {n_ref:6d} | {p[0]:4.1f} " + " ".join(f"{v:6.1f}" for v in p[1:]) + " |"
    c = (tot.corr, tot.sub, tot.dele, tot.ins, tot.err, s_err)
    raw = f"| Sum    |{n_snt:5d} {n_ref:6d} | {c[0]:4d} " + " ".join(f"{v:6d}" for v in c[1:]) + " |"
    title = name[: len(head) - 2].center(len(head) - 2)
    return "\n".join([",-" + "-" * (len(head) - 4) + "-.", f"|{title}|", sep, head, sep, row, raw,
                      "`-" + "-" * (len(head) - 4) + "-'"]) + "\n"


def score(ref_path: Path, hyp_path: Path, unit: str, out: Path, utt2spk_path: Optional[Path] = None,
          nlsyms: Sequence[str] = (), use_sclite: str = "auto") -> Dict[str, object]:
    need_file(ref_path, "reference transcripts", PRODUCERS["data"])
    if not hyp_path.is_file():
        raise RecipeError(f"hypothesis file {hyp_path} does not exist: it is produced by "
                          f"{PRODUCERS['hyp']}; run that first")
    if hyp_path.stat().st_size == 0:
        raise RecipeError(f"hypothesis file {hyp_path} is empty: decoding produced no "
                          f"hypotheses; check the decoding logs ({PRODUCERS['hyp']})")
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
    per_utt: Dict[str, Counts] = {}
    trn_ids: Dict[str, str] = {}
    total = Counts(0, 0, 0, 0)
    n_ref = s_err = 0
    for uid in sorted(refs):
        r = tokens_of(refs[uid], unit, nlsyms)
        h = tokens_of(hyps.get(uid, ""), unit, nlsyms)
        c, _ = align(r, h)
        per_utt[uid] = c
        total = total + c
        n_ref += len(r)
        s_err += c.err > 0
        spk = utt2spk.get(uid, uid)
        trn_ids[uid] = f"{spk}-{uid}"
        ref_trn.append(" ".join(trn_token(t) for t in r) + f" ({trn_ids[uid]})\n")
        hyp_trn.append(" ".join(trn_token(t) for t in h) + f" ({trn_ids[uid]})\n")
    kvfile.atomic_write_text(out / "ref.trn", "".join(ref_trn))
    kvfile.atomic_write_text(out / "hyp.trn", "".join(hyp_trn))
    n_snt = len(refs)
    cmd = find_sclite() if use_sclite != "no" else None
    report = ""
    if cmd is None and use_sclite == "yes":
        raise RecipeError("sclite not found (Debian/Ubuntu: apt-get install sctk)")
    if cmd is not None:
        report, row, sc_utt = run_sclite(cmd, out)
        ours = (n_snt, n_ref, total.corr, total.sub, total.dele, total.ins, total.err, s_err)
        # sclite prints the ids lower-cased
        sc_utt = {fold(k): v for k, v in sc_utt.items()}
        diff = [uid for uid in sorted(refs) if sc_utt.get(fold(trn_ids[uid])) != per_utt[uid]]
        if len({fold(i) for i in trn_ids.values()}) < len(trn_ids):
            diff = []  # ids differing only in case: compare the totals only
        kvfile.atomic_write_text(out / "sclite.txt", report)
        if row != ours or diff:
            detail = "; ".join(f"{u}: python {tuple(per_utt[u])} sclite {tuple(sc_utt.get(fold(trn_ids[u]), ()))}"
                               for u in diff[:5])
            raise RecipeError(f"sclite and the Python alignment disagree: sclite {row}, python {ours}"
                              f"{'; ' + detail if detail else ''} (see {out}/sclite.txt)")
    elif use_sclite == "auto":
        log(TOOL, "warning: sclite not found (apt-get install sctk); scores from the Python alignment only")
    name = f"{'CER' if unit == 'char' else 'WER'}: {hyp_path}"
    table = summary_table(n_snt, n_ref, total, s_err, name)
    notes = []
    if missing:
        notes.append(f"{len(missing)} reference(s) without hypothesis, counted as deletions: "
                     + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    if extra:
        notes.append(f"{len(extra)} hypothesis(es) without reference, ignored: "
                     + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))
    checked = "agrees with sclite" if cmd is not None else "sclite not run"
    body = (table + f"\nunit: {unit} ({'characters, spaces removed' if unit == 'char' else 'words'}); "
            f"case-insensitive (ASCII); Python alignment {checked}\nref: {ref_path}\nhyp: {hyp_path}\n"
            + "".join(n + "\n" for n in notes))
    if report:
        body += "\n" + "=" * 20 + " sclite -o all " + "=" * 20 + "\n" + report
    kvfile.atomic_write_text(out / "result.txt", body)
    result = {
        "n_snt": n_snt, "n_ref": n_ref,
        "corr": pct(total.corr, n_ref), "sub": pct(total.sub, n_ref), "del": pct(total.dele, n_ref),
        "ins": pct(total.ins, n_ref), "err": pct(total.err, n_ref), "s_err": pct(s_err, n_snt),
        "n_corr": total.corr, "n_sub": total.sub, "n_del": total.dele, "n_ins": total.ins,
        "n_err": total.err, "n_s_err": s_err,
        "unit": unit, "metric": "cer" if unit == "char" else "wer",
        "n_missing_hyp": len(missing), "n_extra_hyp": len(extra),
        "sclite_checked": cmd is not None, "ref": str(ref_path), "hyp": str(hyp_path),
    }
    kvfile.atomic_write_text(out / "score.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    for n in notes:
        log(TOOL, n)
    return result


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m espnet_iml.recipe.{TOOL}",
        description="CER/WER with sclite, cross-checked by a Python alignment.",
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
    p.add_argument("--sclite", choices=("auto", "yes", "no"), default="auto",
                   help="auto: run sclite when installed (default); yes: require it; no: Python only")
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
        r = score(args.ref, args.hyp, args.unit, args.out, args.utt2spk, nlsyms, args.sclite)
        metric = "CER" if args.unit == "char" else "WER"
        log(TOOL, f"{metric} {r['err']:.2f} % ({r['n_snt']} utterances, {r['n_ref']} {args.unit}s: "
                  f"sub {r['n_sub']}, del {r['n_del']}, ins {r['n_ins']}) -> {args.out}/result.txt")
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
