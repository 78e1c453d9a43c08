"""Global CMVN statistics of a feature set, in Kaldi and in ESPnet format.

    python -m espnet_iml.recipe.cmvn --feats dump/fbank/train/feats.scp \
        --out dump/fbank/train/cmvn.ark [--npz dump/fbank/train/feats_stats.npz]

--out: Kaldi's global stats (what ``compute-cmvn-stats scp:feats.scp cmvn.ark`` writes), a
single binary double matrix of shape 2 x (dim + 1): row 0 = per-dimension sums and the frame
count in the last column, row 1 = sums of squares (last column 0). Read it with
``kaldiio.load_mat``. --npz: ESPnet's feats_stats.npz (keys count, sum, sum_square, as written
by ESPnet's collect_stats), usable as ``--normalize global_mvn --normalize_conf
stats_file=...``. Accumulated in float64.
"""

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from espnet_iml.recipe import kvfile
from espnet_iml.recipe.common import PRODUCERS, RecipeError, log, need_file, run_cli

TOOL = "cmvn"


def accumulate(feats_scp: Path) -> Tuple[np.ndarray, np.ndarray, int, int]:
    """(sum, sum of squares, frame count, utterances) over every matrix of ``feats_scp``."""
    import kaldiio

    total = sq = None
    count = n_utt = 0
    for e in kvfile.iter_entries(feats_scp):
        try:
            mat = np.asarray(kaldiio.load_mat(e.value), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - name the entry that is broken
            raise RecipeError(f"{feats_scp} line {e.lineno}: cannot read {e.value} "
                              f"({type(exc).__name__}: {exc}); re-run {PRODUCERS['feats']}") from None
        if mat.ndim != 2:
            raise RecipeError(f"{feats_scp} line {e.lineno}: {e.key} is not a matrix (shape {mat.shape})")
        if total is None:
            total, sq = np.zeros(mat.shape[1]), np.zeros(mat.shape[1])
        elif mat.shape[1] != total.shape[0]:
            raise RecipeError(f"{feats_scp} line {e.lineno}: {e.key} has dimension {mat.shape[1]}, "
                              f"the previous utterances {total.shape[0]}")
        total += mat.sum(0)
        sq += (mat * mat).sum(0)
        count += mat.shape[0]
        n_utt += 1
    if total is None or count == 0:
        raise RecipeError(f"{feats_scp} holds no frames; re-run {PRODUCERS['feats']}")
    return total, sq, count, n_utt


def kaldi_stats(total: np.ndarray, sq: np.ndarray, count: int) -> np.ndarray:
    stats = np.zeros((2, total.shape[0] + 1), dtype=np.float64)
    stats[0, :-1], stats[1, :-1], stats[0, -1] = total, sq, count
    return stats


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_kaldi(path: Path, stats: np.ndarray) -> None:
    import kaldiio

    buf = io.BytesIO()
    kaldiio.save_mat(buf, stats)
    _atomic_bytes(path, buf.getvalue())


def write_npz(path: Path, total: np.ndarray, sq: np.ndarray, count: int) -> None:
    buf = io.BytesIO()
    np.savez(buf, count=np.int64(count), sum=total, sum_square=sq)
    _atomic_bytes(path, buf.getvalue())


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m espnet_iml.recipe.{TOOL}",
        description="Global CMVN statistics (Kaldi matrix and/or ESPnet feats_stats.npz).",
    )
    p.add_argument("--feats", type=Path, required=True, help="feats.scp of the training set")
    p.add_argument("--out", type=Path, help="Kaldi stats matrix to write, e.g. .../cmvn.ark")
    p.add_argument("--npz", type=Path, help="ESPnet stats file to write, e.g. .../feats_stats.npz")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        if args.out is None and args.npz is None:
            raise RecipeError("nothing to write: give --out (Kaldi matrix) and/or --npz (ESPnet)")
        need_file(args.feats, "feature index", PRODUCERS["feats"])
        total, sq, count, n_utt = accumulate(args.feats)
        if args.out is not None:
            write_kaldi(args.out, kaldi_stats(total, sq, count))
            log(TOOL, f"{args.out}: Kaldi global CMVN stats (2 x {total.shape[0] + 1})")
        if args.npz is not None:
            write_npz(args.npz, total, sq, count)
            log(TOOL, f"{args.npz}: ESPnet stats (count, sum, sum_square)")
        mean = total / count
        std = np.sqrt(np.maximum(sq / count - mean * mean, 1e-20))
        log(TOOL, f"{n_utt} utterances, {count} frames, dim {total.shape[0]}; mean {mean.mean():.3f}, "
                  f"std {std.mean():.3f} (averaged over dimensions)")
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
