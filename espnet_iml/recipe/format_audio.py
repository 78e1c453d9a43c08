"""Format the audio of a data directory: 16-bit PCM mono wav files at one sample rate.

    python -m espnet_iml.recipe.format_audio --data data/x --out dump/raw/x --fs 16000 [--nj N]

Reads every wav.scp entry (a file soundfile reads, e.g. wav or flac, or a ``CMD |`` pipe),
checks it, resamples it to --fs when needed (torchaudio's windowed-sinc resampler), keeps the
first channel of multi-channel audio and writes OUT/data/format.<k>/<uttid>.wav. Then
OUT/wav.scp, utt2num_samples, copies of text and utt2spk for the surviving utterances, a
regenerated spk2utt, spk2gender when present, and feats_type ("raw").

Unreadable, empty or broken audio is skipped, counted and reported with its id and reason
(full list: OUT/skipped.txt); the other utterances are kept. The exit status is non-zero only
when no utterance survived. Re-running over complete output with unchanged inputs is a no-op.
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote

import soundfile

from espnet_iml.recipe import audio, datadir, kvfile
from espnet_iml.recipe.common import (PRODUCERS, RecipeError, Skips, Stamp, chunks, imap, log,
                                      need_file, run_cli)

TOOL = "format_audio"


def wav_name(uttid: str) -> str:
    """A file name for an utterance id (ids with '/' or a leading '.' are quoted)."""
    return (quote(uttid, safe="") if "/" in uttid or uttid.startswith(".") else uttid) + ".wav"


def convert(job: Tuple[int, List[Tuple[str, str]], str, int]) -> List[Tuple[str, str, str]]:
    """Convert one piece; each utterance gives (uttid, "ok"|"skip", path-or-reason + info)."""
    k, items, out_dir, fs = job
    dest_dir = Path(out_dir) / "data" / f"format.{k}"
    dest_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for uttid, entry in items:
        try:
            x, sr, channels = audio.load(entry)
            notes = []
            if channels > 1:
                notes.append("multichannel")
            if sr != fs:
                x = audio.resample(x, sr, fs)
                notes.append(f"resampled:{sr}")
            if x.shape[0] == 0:
                raise audio.AudioError(f"empty after resampling from {sr} Hz")
            pcm, clipped = audio.to_int16(x)
            if clipped:
                notes.append(f"clipped:{clipped}")
            dest = dest_dir / wav_name(uttid)
            tmp = dest.with_name(f".{dest.name}.tmp")
            soundfile.write(str(tmp), pcm, fs, subtype="PCM_16", format="WAV")
            os.replace(tmp, dest)
            results.append((uttid, "ok", f"{dest}\t{pcm.shape[0]}\t{' '.join(notes)}"))
        except audio.AudioError as exc:
            results.append((uttid, "skip", str(exc)))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the stage
            results.append((uttid, "skip", f"{type(exc).__name__}: {exc}"))
    return results


def format_dir(data: Path, out: Path, fs: int, nj: int = 1) -> Dict[str, int]:
    wav_scp = need_file(data / "wav.scp", "audio list", PRODUCERS["data"])
    need_file(data / "utt2spk", "utterance-to-speaker map", PRODUCERS["data"])
    if fs <= 0:
        raise RecipeError(f"--fs {fs}: expected a positive sample rate in Hz, e.g. 16000")
    if out.resolve() == data.resolve():
        raise RecipeError(f"--out {out} is the input directory; choose another one")
    inputs = [data / n for n in datadir.present(data)]
    stamp = Stamp(out, TOOL, {"fs": fs, "data": str(data)}, inputs)
    if stamp.is_done() and (out / "wav.scp").is_file():
        log(TOOL, f"{out} is complete for these inputs; nothing to do")
        return {"kept": len(kvfile.read_dict(out / "wav.scp")), "skipped": 0, "resampled": 0}
    stamp.clear()
    files = datadir.load(data)
    entries = files["wav.scp"]
    skips = Skips()
    utts = []
    for u in sorted(files["utt2spk"]):
        if u not in entries:
            skips.add(u, "not in wav.scp")
        else:
            utts.append(u)
    for u in sorted(set(entries) - set(files["utt2spk"])):
        skips.add(u, "not in utt2spk")
    if not utts:
        raise RecipeError(f"{wav_scp} and {data}/utt2spk have no utterance in common")
    for old in (out / "data").glob("format.*"):  # wav files of an earlier, different run
        shutil.rmtree(old, ignore_errors=True)
    pieces = chunks([(u, entries[u]) for u in utts], max(1, nj) * 4)
    jobs = [(k + 1, piece, str(out), fs) for k, piece in enumerate(pieces)]
    kept: Dict[str, str] = {}
    nsamples: Dict[str, str] = {}
    resampled: Dict[int, int] = {}
    multichannel = clipped = done = 0
    t0 = time.monotonic()
    log(TOOL, f"{data} -> {out}: {len(utts)} utterances, {len(jobs)} pieces, {nj} job(s)")
    for results in imap(convert, jobs, nj):
        for uttid, status, info in results:
            if status == "skip":
                skips.add(uttid, info)
                continue
            path, n, notes = info.split("\t")
            kept[uttid], nsamples[uttid] = path, n
            for note in notes.split():
                key, _, val = note.partition(":")
                if key == "resampled":
                    resampled[int(val)] = resampled.get(int(val), 0) + 1
                elif key == "multichannel":
                    multichannel += 1
                elif key == "clipped":
                    clipped += 1
        done += len(results)
        log(TOOL, f"  {done}/{len(utts)} ({100.0 * done / len(utts):.0f} %), "
                  f"{time.monotonic() - t0:.1f} s")
    skips.report(TOOL, path=out / "skipped.txt")
    if resampled:
        log(TOOL, f"resampled {sum(resampled.values())} utterance(s) to {fs} Hz (from "
                  + ", ".join(f"{sr} Hz: {n}" for sr, n in sorted(resampled.items())) + ")")
    if multichannel:
        log(TOOL, f"{multichannel} multi-channel utterance(s): kept the first channel")
    if clipped:
        log(TOOL, f"{clipped} utterance(s) had samples clipped to the 16-bit range")
    if not kept:
        raise RecipeError(f"no utterance of {data} could be formatted (all {len(utts)} skipped, see above)")
    out_files = datadir.restrict(files, kept)
    for n in ("feats.scp", "utt2num_frames", "feats_shape", "utt2num_samples", "utt2dur"):
        out_files.pop(n, None)
    out_files["wav.scp"] = kept
    out_files["utt2num_samples"] = nsamples
    datadir.write(out, out_files)
    kvfile.atomic_write_text(out / "feats_type", "raw\n")
    kvfile.atomic_write_text(out / "fs", f"{fs}\n")
    stamp.mark()
    log(TOOL, f"{out}: {len(kept)} utterances written, {len(skips)} skipped, "
              f"{sum(resampled.values())} resampled")
    return {"kept": len(kept), "skipped": len(skips), "resampled": sum(resampled.values())}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m espnet_iml.recipe.{TOOL}",
        description="Check, resample and write the audio of a data directory as 16-bit PCM wav.",
    )
    p.add_argument("--data", type=Path, required=True, help="input data directory (wav.scp, text, utt2spk)")
    p.add_argument("--out", type=Path, required=True, help="output directory, e.g. dump/raw/train")
    p.add_argument("--fs", type=int, default=16000, help="sample rate in Hz (default 16000)")
    p.add_argument("--nj", type=int, default=1, help="parallel processes (default 1)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        format_dir(args.data, args.out, args.fs, args.nj)
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
