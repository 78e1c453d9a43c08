"""Log-mel filter-bank features of a formatted data directory, as Kaldi ark/scp.

    python -m espnet_iml.recipe.fbank --data dump/raw/x --out dump/fbank/x [--n_mels 80] [--nj N]

Features: torchaudio.compliance.kaldi.fbank (Kaldi's compute-fbank): 25 ms frames every
10 ms, povey window, pre-emphasis 0.97, snip_edges (1 + (samples - 400) // 160 frames at
16 kHz), dither 0 for determinism, on 16-bit-scaled samples like Kaldi. Written with kaldiio
as float32 matrices to OUT/data/feats.<k>.ark (one per piece of the work) and indexed by
OUT/feats.scp; plus utt2num_frames, feats_shape ("uttid frames,dim"), feats_type ("fbank"),
feats_dim and copies of text, utt2spk, spk2utt (spk2gender, utt2num_samples) for the
utterances that got features. Audio too short for one frame, unreadable, or at another sample
rate than the rest is skipped and reported (OUT/skipped.txt). Re-running over complete output
with unchanged inputs is a no-op.
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_iml.recipe import audio, datadir, kvfile
from espnet_iml.recipe.common import (PRODUCERS, RecipeError, Skips, Stamp, chunks, imap, log,
                                      need_file, run_cli)

TOOL = "fbank"
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0


def compute(samples, sr: int, n_mels: int):
    """(frames, n_mels) float32 numpy array of one utterance (float samples in [-1, 1])."""
    import torch
    import torchaudio.compliance.kaldi as kaldi

    wave = torch.from_numpy(samples).to(torch.float32).mul_(32768.0).unsqueeze(0)
    feats = kaldi.fbank(wave, sample_frequency=float(sr), num_mel_bins=n_mels,
                        frame_length=FRAME_LENGTH_MS, frame_shift=FRAME_SHIFT_MS, dither=0.0,
                        energy_floor=0.0, snip_edges=True)
    return feats.numpy()


def min_samples(sr: int) -> int:
    return int(sr * FRAME_LENGTH_MS / 1000)


def extract(job: Tuple[int, List[Tuple[str, str]], str, int, int]) -> Tuple[str, List[Tuple[str, str, str]]]:
    """One piece: features of its utterances into OUT/data/feats.<k>.ark; (scp path, results)."""
    import kaldiio

    k, items, out_dir, n_mels, fs = job
    data_dir = Path(out_dir) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    ark, scp = data_dir / f"feats.{k}.ark", data_dir / f"feats.{k}.scp"
    tmp_ark, tmp_scp = data_dir / f".feats.{k}.ark.tmp", data_dir / f".feats.{k}.scp.tmp"
    results = []
    with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
        for uttid, entry in items:
            try:
                x, sr, _ = audio.load(entry)
                if sr != fs:
                    raise audio.AudioError(f"sample rate {sr} Hz, expected {fs} Hz "
                                           "(run format_audio with --fs)")
                if x.shape[0] < min_samples(sr):
                    raise audio.AudioError(f"too short for one frame ({x.shape[0]} samples < "
                                           f"{min_samples(sr)})")
                feats = compute(x, sr, n_mels)
                writer[uttid] = feats
                results.append((uttid, "ok", str(feats.shape[0])))
            except audio.AudioError as exc:
                results.append((uttid, "skip", str(exc)))
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the stage
                results.append((uttid, "skip", f"{type(exc).__name__}: {exc}"))
    # The scp names the temporary ark: point it at the final name, then rename both.
    lines = []
    for e in kvfile.read_entries(tmp_scp) if tmp_scp.stat().st_size else []:
        path, _, offset = e.value.rpartition(":")
        if path != str(tmp_ark):  # pragma: no cover - kaldiio writes the path it was given
            raise RuntimeError(f"unexpected scp entry {e.value}")
        lines.append((e.key, f"{ark}:{offset}"))
    os.replace(tmp_ark, ark)
    kvfile.write_dict(scp, lines, sort=False)
    tmp_scp.unlink()
    return str(scp), results


def fbank_dir(data: Path, out: Path, n_mels: int = 80, nj: int = 1) -> Dict[str, int]:
    wav_scp = need_file(data / "wav.scp", "formatted audio list", PRODUCERS["raw"])
    need_file(data / "utt2spk", "utterance-to-speaker map", PRODUCERS["raw"])
    if n_mels <= 0:
        raise RecipeError(f"--n_mels {n_mels}: expected a positive number of mel bins, e.g. 80")
    if out.resolve() == data.resolve():
        raise RecipeError(f"--out {out} is the input directory; choose another one")
    inputs = [data / n for n in datadir.present(data)]
    stamp = Stamp(out, TOOL, {"n_mels": n_mels, "data": str(data), "frame": [FRAME_LENGTH_MS, FRAME_SHIFT_MS]},
                  inputs)
    if stamp.is_done() and (out / "feats.scp").is_file():
        n = len(kvfile.read_dict(out / "feats.scp"))
        log(TOOL, f"{out} is complete for these inputs ({n} utterances); nothing to do")
        return {"kept": n, "skipped": 0}
    stamp.clear()
    files = datadir.load(data)
    entries = files["wav.scp"]
    skips = Skips()
    utts = [u for u in sorted(files["utt2spk"]) if u in entries]
    for u in sorted(set(files["utt2spk"]) - set(entries)):
        skips.add(u, "not in wav.scp")
    if not utts:
        raise RecipeError(f"{wav_scp} and {data}/utt2spk have no utterance in common")
    if (data / "fs").is_file():
        fs = int((data / "fs").read_text().split()[0])
    else:
        try:
            fs = audio.load(entries[utts[0]])[1]
        except audio.AudioError as exc:
            raise RecipeError(f"cannot read the first utterance {utts[0]} to find the sample rate "
                              f"({exc}); run format_audio first ({PRODUCERS['raw']})") from None
    n_pieces = min(len(utts), max(nj * 4, math.ceil(len(utts) / 2000)))
    jobs = [(k + 1, piece, str(out), n_mels, fs)
            for k, piece in enumerate(chunks([(u, entries[u]) for u in utts], n_pieces))]
    data_dir = out / "data"
    if data_dir.is_dir():  # arks of an earlier, different run
        for old in data_dir.glob("feats.*"):
            old.unlink()
    frames: Dict[str, str] = {}
    scp: Dict[str, str] = {}
    done = 0
    t0 = time.monotonic()
    log(TOOL, f"{data} -> {out}: {len(utts)} utterances at {fs} Hz, {n_mels} mel bins, "
              f"{len(jobs)} pieces, {nj} job(s)")
    for piece_scp, results in imap(extract, jobs, nj):
        piece = kvfile.read_dict(piece_scp) if Path(piece_scp).stat().st_size else {}
        for uttid, status, info in results:
            if status == "skip":
                skips.add(uttid, info)
            else:
                frames[uttid] = info
                scp[uttid] = piece[uttid]
        done += len(results)
        log(TOOL, f"  {done}/{len(utts)} ({100.0 * done / len(utts):.0f} %), "
                  f"{time.monotonic() - t0:.1f} s")
    skips.report(TOOL, path=out / "skipped.txt")
    if not scp:
        raise RecipeError(f"no features computed for {data} (all {len(utts)} utterances skipped, see above)")
    out_files = datadir.restrict(files, scp)
    for n in ("wav.scp", "utt2num_frames", "feats_shape", "utt2dur"):
        out_files.pop(n, None)
    out_files["feats.scp"] = scp
    out_files["utt2num_frames"] = frames
    out_files["feats_shape"] = {u: f"{n},{n_mels}" for u, n in frames.items()}
    datadir.write(out, out_files)
    kvfile.atomic_write_text(out / "feats_type", "fbank\n")
    kvfile.atomic_write_text(out / "feats_dim", f"{n_mels}\n")
    stamp.mark()
    log(TOOL, f"{out}: {len(scp)} utterances, {sum(int(v) for v in frames.values())} frames "
              f"x {n_mels}; {len(skips)} skipped")
    return {"kept": len(scp), "skipped": len(skips)}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m espnet_iml.recipe.{TOOL}",
        description="Kaldi-compatible log-mel filter banks (25 ms / 10 ms) as ark/scp.",
    )
    p.add_argument("--data", type=Path, required=True, help="formatted data directory, e.g. dump/raw/train")
    p.add_argument("--out", type=Path, required=True, help="output directory, e.g. dump/fbank/train")
    p.add_argument("--n_mels", "--n-mels", type=int, default=80, help="mel bins (default 80)")
    p.add_argument("--nj", type=int, default=1, help="parallel processes (default 1)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        fbank_dir(args.data, args.out, args.n_mels, args.nj)
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
