"""Reading wav.scp entries: a file readable by soundfile, or a shell command ending in ``|``.

``load`` returns mono float64 samples in [-1, 1] and the sample rate, or raises AudioError
with a short reason (shown in the tools' skip reports). 16-bit samples survive the round
trip exactly: soundfile scales them by 1/32768 and ``to_int16`` multiplies back.
"""

import io
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import soundfile

# A pipe that does not finish in this time is treated as broken.
PIPE_TIMEOUT_S = 600


class AudioError(Exception):
    """Audio that cannot be used; str(exc) is the reason."""


def is_pipe(entry: str) -> bool:
    return entry.rstrip().endswith("|")


def _read(source, what: str) -> Tuple[np.ndarray, int]:
    try:
        data, sr = soundfile.read(source, dtype="float64", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as exc:
        raise AudioError(f"unreadable audio ({what}): {str(exc).strip()[:200]}") from None
    return data, int(sr)


def load_multichannel(entry: str) -> Tuple[np.ndarray, int]:
    """(samples, channels) float64 array and sample rate of one wav.scp entry."""
    entry = entry.strip()
    if is_pipe(entry):
        cmd = entry.rstrip()[:-1].strip()
        try:
            proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=PIPE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AudioError(f"command did not finish in {PIPE_TIMEOUT_S} s: {cmd}") from None
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            tail = err[-1] if err else "no message"
            raise AudioError(f"command failed (exit {proc.returncode}: {tail[:200]}): {cmd}")
        if not proc.stdout:
            raise AudioError(f"command wrote no audio: {cmd}")
        data, sr = _read(io.BytesIO(proc.stdout), "output of the command")
    else:
        path = Path(entry)
        if not path.is_file():
            raise AudioError(f"file not found: {entry}")
        if path.stat().st_size == 0:
            raise AudioError(f"empty file: {entry}")
        data, sr = _read(str(path), entry)
    if sr <= 0:
        raise AudioError(f"invalid sample rate {sr}")
    if data.shape[0] == 0:
        raise AudioError("empty audio (0 samples)")
    if not np.all(np.isfinite(data)):
        raise AudioError("audio contains NaN or infinite samples")
    return data, sr


def check_file(path: str) -> Optional[str]:
    """Why an audio file cannot be used, from its size and header; None when it looks fine.

    Cheap enough for stage 1 over a whole corpus (the samples are not decoded: damage after a
    good header shows up in stage 3, which decodes everything).
    """
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return f"audio file not readable ({exc.strerror})"
    if size == 0:
        return "empty audio file (0 bytes)"
    try:
        info = soundfile.info(path)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError):
        return "undecodable audio (not a format soundfile reads)"
    if info.frames == 0:
        return "empty audio (0 samples)"
    return None


def check_files(paths: Mapping[str, str], nj: int = 8) -> Dict[str, str]:
    """key -> reason for the files of ``paths`` (key -> path) that ``check_file`` rejects."""
    keys = list(paths)
    with ThreadPoolExecutor(max(1, nj)) as pool:  # I/O bound: threads are enough
        reasons = pool.map(check_file, [paths[k] for k in keys])
    return {k: r for k, r in zip(keys, reasons) if r is not None}


def load(entry: str) -> Tuple[np.ndarray, int, int]:
    """Mono samples (first channel), sample rate and the number of channels read."""
    data, sr = load_multichannel(entry)
    return data[:, 0].copy(), sr, data.shape[1]


def to_int16(x: np.ndarray) -> Tuple[np.ndarray, int]:
    """Float samples in [-1, 1] as int16 (x 32768, rounded); also how many were clipped."""
    y = np.round(np.asarray(x, dtype=np.float64) * 32768.0)
    clipped = int(np.count_nonzero((y > 32767) | (y < -32768)))
    return np.clip(y, -32768, 32767).astype(np.int16), clipped


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited (windowed sinc) resampling with torchaudio."""
    import torch
    import torchaudio.functional

    y = torchaudio.functional.resample(torch.from_numpy(x).to(torch.float64), orig_sr, new_sr)
    return y.numpy()
