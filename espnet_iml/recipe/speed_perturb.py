"""Speed perturbation of a data directory (Kaldi's perturb_data_dir_speed.sh convention).

    python -m espnet_iml.recipe.speed_perturb --data data/train --out data/train_sp \
        --factors 0.9 1.0 1.1

For each factor f != 1.0 the utterance and speaker ids get the prefix ``sp<f>-`` and the
audio becomes a sox pipe that changes speed (tempo and pitch) by f at the same sample rate::

    sp0.9-UTT sox -D FILE -t wav - speed 0.9 |                  (FILE a path)
    sp0.9-UTT CMD | sox -D -t wav - -t wav - speed 0.9 |         (the entry a pipe CMD |)

Factor 1.0 keeps the original ids and audio. text, utt2spk, spk2utt and spk2gender are
carried over; lengths (utt2num_samples, utt2dur) and features are dropped (they change; the
format_audio stage recomputes them). The pipes are run later by format_audio.
"""

import argparse
import shlex
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_iml.recipe import datadir
from espnet_iml.recipe.common import PRODUCERS, RecipeError, log, need_file, run_cli

TOOL = "speed_perturb"


def factor_tag(f: float) -> str:
    """0.9 -> '0.9', 1.1 -> '1.1', 1.0 -> '1.0' (Kaldi writes the factor as given)."""
    return repr(float(f)) if len(repr(float(f))) < 8 else f"{f:g}"


def perturb_entry(entry: str, f: float) -> str:
    tag = factor_tag(f)
    entry = entry.strip()
    if entry.endswith("|"):
        return f"{entry} sox -D -t wav - -t wav - speed {tag} |"
    return f"sox -D {shlex.quote(entry)} -t wav - speed {tag} |"


def perturb(data: Path, out: Path, factors: Sequence[float]) -> Dict[str, int]:
    need_file(data / "wav.scp", "audio list", PRODUCERS["data"])
    need_file(data / "utt2spk", "utterance-to-speaker map", PRODUCERS["data"])
    if (data / "segments").is_file():
        raise RecipeError(f"{data}/segments exists: segmented data directories are not supported")
    if not factors:
        raise RecipeError("--factors needs at least one factor, e.g. --factors 0.9 1.0 1.1")
    for f in factors:
        if not 0.1 <= f <= 10:
            raise RecipeError(f"speed factor {f} out of range (expected e.g. 0.9 1.0 1.1)")
    if len({factor_tag(f) for f in factors}) != len(factors):
        raise RecipeError(f"--factors {' '.join(map(str, factors))} has repeated factors")
    if any(f != 1.0 for f in factors) and shutil.which("sox") is None:
        raise RecipeError("speed perturbation needs sox on PATH (Debian/Ubuntu: apt-get install sox)")
    files = datadir.load(data)
    keep = [n for n in ("wav.scp", "text", "utt2spk") if n in files]
    out_files: Dict[str, Dict[str, str]] = {n: {} for n in keep}
    if "spk2gender" in files:
        out_files["spk2gender"] = {}
    utts = sorted(files["utt2spk"])
    missing = [u for u in utts if u not in files["wav.scp"]]
    if missing:
        raise RecipeError(f"{data}/wav.scp lacks {len(missing)} utterance(s) of utt2spk "
                          f"(e.g. {missing[0]}); run 'python -m espnet_iml.recipe.datadir fix {data}'")
    counts: Dict[str, int] = {}
    for f in factors:
        prefix = "" if f == 1.0 else f"sp{factor_tag(f)}-"
        for u in utts:
            nu = prefix + u
            out_files["utt2spk"][nu] = prefix + files["utt2spk"][u]
            out_files["wav.scp"][nu] = files["wav.scp"][u] if f == 1.0 else perturb_entry(files["wav.scp"][u], f)
            if "text" in files and u in files["text"]:
                out_files["text"][nu] = files["text"][u]
        if "spk2gender" in files:
            for s, g in files["spk2gender"].items():
                out_files["spk2gender"][prefix + s] = g
        counts[factor_tag(f)] = len(utts)
    if out.resolve() == data.resolve():
        raise RecipeError(f"--out {out} is the input directory; choose another one (e.g. {data}_sp)")
    datadir.write(out, out_files)
    return counts


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m espnet_iml.recipe.{TOOL}",
        description="Speed-perturbed copy of a data directory (sox pipes; Kaldi id prefixes sp<f>-).",
    )
    p.add_argument("--data", type=Path, required=True, help="input data directory")
    p.add_argument("--out", type=Path, required=True, help="output data directory")
    p.add_argument("--factors", type=float, nargs="+", default=[0.9, 1.0, 1.1],
                   help="speed factors (default 0.9 1.0 1.1; 1.0 keeps ids unprefixed)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        counts = perturb(args.data, args.out, args.factors)
        total = sum(counts.values())
        log(TOOL, f"{args.out}: {total} utterances ("
                  + ", ".join(f"x{k}: {v}" for k, v in counts.items()) + ")")
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
