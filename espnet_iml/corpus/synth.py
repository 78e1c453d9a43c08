"""Speech synthesis for our synthetic stand-ins of LibriSpeech and AiShell-1.

espeak-ng writes 22.05 kHz wav; sox trims and pads silence, normalises the level and
resamples to 16 kHz 16-bit mono. sox runs with -D (no dither) and -R (fixed random seed) so
the same job gives the same bytes on every run. A speaker is an espeak-ng voice + variant +
base pitch + base speed; each utterance jitters speed, pitch, padding and level. "Hard"
speakers (LibriSpeech's "other" subsets) have extreme speed/pitch and additive Gaussian noise,
drawn here in Python from a per-utterance seed (again for reproducible bytes).
"""

import array
import hashlib
import math
import multiprocessing
import random
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Set, Tuple

SAMPLE_RATE = 16000
MIN_SECONDS = 0.3  # anything shorter means espeak-ng produced (almost) nothing

ENGLISH_VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)
MANDARIN_VOICES = ("cmn-latn-pinyin",)
# espeak-ng variants (files under espeak-ng-data/voices/!v) that stay intelligible.
CLEAN_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt",
    "klatt2", "klatt3", "adam", "alex", "andy", "Annie", "belinda", "benjamin", "caleb",
    "david", "ed", "linda", "max", "Michael", "paul", "robert", "steph", "travis", "victor",
)
# Rougher voices for the hard ("other") speakers.
HARD_VARIANTS = (
    "croak", "grandma", "grandpa", "klatt4", "Storm", "iven", "kaukovalta", "anika",
    "norbert", "quincy", "aunty", "edward", "Gene", "Jacky", "Lee", "rob",
)
FEMALE_VARIANTS = frozenset(
    {"f1", "f2", "f3", "f4", "f5", "Annie", "belinda", "linda", "steph", "grandma",
     "anika", "aunty"}
)


class ToolMissing(RuntimeError):
    """espeak-ng or sox is not installed."""


def check_tools(voices: Sequence[str] = ()) -> None:
    """Raise ToolMissing naming missing programs or espeak-ng voices, and the fix."""
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise ToolMissing(
            f"{' and '.join(missing)} not found on PATH; run ./setup.sh "
            "(it apt-installs sox, libsox-fmt-all, espeak-ng and flac)"
        )
    listing = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True).stdout
    known = {line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 1}
    # An unknown variant falls back silently, an unknown voice fails: check the voices.
    absent = [v for v in voices if v not in known]
    if absent:
        raise ToolMissing(
            f"espeak-ng has no voice {', '.join(absent)}; install espeak-ng >= 1.51 "
            "with its data (./setup.sh apt-installs it)"
        )


def derive_seed(*parts: object) -> int:
    """A stable 64-bit seed from any parts (hash() is salted per process, sha256 is not)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: voice, variant, base speed (words/min) and pitch (0-99)."""

    voice: str
    variant: str
    speed: int
    pitch: int
    hard: bool = False

    @property
    def gender(self) -> str:
        return "F" if self.variant in FEMALE_VARIANTS else "M"

    @property
    def description(self) -> str:
        return f"espeak-ng {self.voice}+{self.variant} s{self.speed} p{self.pitch}"


def make_speakers(
    rng: random.Random, voices: Sequence[str], n: int, hard: bool, taken: Set[Tuple[str, str]]
) -> List[Speaker]:
    """n speakers with (voice, variant) pairs not in ``taken`` (updated), so none repeat."""
    variants = HARD_VARIANTS if hard else CLEAN_VARIANTS
    pairs = [(v, x) for v in voices for x in variants if (v, x) not in taken]
    rng.shuffle(pairs)
    if len(pairs) < n:
        raise ValueError(f"only {len(pairs)} unused voice/variant pairs for {n} speakers")
    speakers = []
    for voice, variant in pairs[:n]:
        taken.add((voice, variant))
        if hard:
            # Extreme on purpose: very slow or very fast, very low or very high.
            speed = rng.choice((rng.randint(105, 125), rng.randint(205, 235)))
            pitch = rng.choice((rng.randint(5, 20), rng.randint(80, 95)))
        else:
            speed = rng.randint(135, 185)
            pitch = rng.randint(25, 75)
        speakers.append(Speaker(voice, variant, speed, pitch, hard))
    return speakers


@dataclass(frozen=True)
class Job:
    """Everything needed to render one utterance; all randomness is already drawn."""

    text: str
    out: str
    voice: str
    speed: int
    pitch: int
    pad_start: float
    pad_end: float
    gain_db: float
    snr_db: Optional[float] = None
    noise_seed: int = 0


def make_job(speaker: Speaker, text: str, out: Path, rng: random.Random) -> Job:
    """Draw the per-utterance jitter of ``speaker`` for ``text`` rendered to ``out``."""
    speed = max(80, round(speaker.speed * rng.uniform(0.9, 1.1)))
    pitch = min(99, max(0, speaker.pitch + rng.randint(-6, 6)))
    snr = round(rng.uniform(8.0, 18.0), 2) if speaker.hard else None
    return Job(
        text=text,
        out=str(out),
        voice=f"{speaker.voice}+{speaker.variant}",
        speed=speed,
        pitch=pitch,
        pad_start=round(rng.uniform(0.05, 0.3), 3),
        pad_end=round(rng.uniform(0.05, 0.3), 3),
        gain_db=round(rng.uniform(1.0, 6.0), 2),
        snr_db=snr,
        noise_seed=rng.getrandbits(63),
    )


def _run(cmd: List[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err}")


def _sox(inp: str, out: str, effects: List[str]) -> None:
    # --comment "" keeps sox's "Processed by SoX" tag out of FLAC files.
    _run(["sox", "-D", "-R", "-V1", inp, "-r", str(SAMPLE_RATE), "-b", "16", "-c", "1",
          "-e", "signed-integer", "--comment", "", out, *effects])


def _read_pcm(path: str) -> array.array:
    with wave.open(path, "rb") as w:
        samples = array.array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _write_pcm(path: str, samples: array.array) -> None:
    data = array.array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(data.tobytes())


def add_noise(samples: array.array, snr_db: float, seed: int) -> array.array:
    """White Gaussian noise at ``snr_db`` below the signal power, clipped to int16."""
    power = sum(s * s for s in samples) / max(1, len(samples))
    sigma = math.sqrt(power / (10.0 ** (snr_db / 10.0)))
    rng = random.Random(seed)
    return array.array(
        "h", (max(-32768, min(32767, round(s + rng.gauss(0.0, sigma)))) for s in samples)
    )


def render(job: Job) -> float:
    """Synthesise ``job`` into job.out (.wav or .flac); return its duration in seconds."""
    with tempfile.TemporaryDirectory(prefix="iml-synth-") as tmp:
        raw = f"{tmp}/espeak.wav"
        _run(["espeak-ng", "-v", job.voice, "-s", str(job.speed), "-p", str(job.pitch),
              "-w", raw, job.text])
        clean = f"{tmp}/clean.wav"
        level = ["gain", "-n", f"-{job.gain_db}"]
        pad = ["pad", str(job.pad_start), str(job.pad_end)]
        # Trim espeak-ng's own leading/trailing silence, then pad our jittered amount.
        trim = ["silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%",
                "reverse"]
        _sox(raw, clean, trim + level + pad)
        samples = _read_pcm(clean)
        if len(samples) < MIN_SECONDS * SAMPLE_RATE:
            # Trimming ate too much (very quiet synthesis): keep espeak-ng's silence.
            _sox(raw, clean, level + pad)
            samples = _read_pcm(clean)
        if len(samples) < MIN_SECONDS * SAMPLE_RATE:
            raise RuntimeError(f"espeak-ng produced no audio for {job.text!r} ({job.voice})")
        if job.snr_db is not None:
            samples = add_noise(samples, job.snr_db, job.noise_seed)
            _write_pcm(clean, samples)
        Path(job.out).parent.mkdir(parents=True, exist_ok=True)
        if job.out.endswith(".wav"):
            shutil.move(clean, job.out)
        else:
            _sox(clean, job.out, [])  # the output suffix (.flac) picks the format
    return len(samples) / SAMPLE_RATE


def run_pool(
    fn: Callable, items: Sequence, nj: int, label: str, verbose: bool = True
) -> List:
    """fn over items with ``nj`` processes, results in input order; prints progress."""
    total = len(items)
    step = max(1, total // 10) if total >= 100 else total
    results: List = [None] * total

    def report(done: int) -> None:
        if verbose and (done % step == 0 or done == total):
            print(f"[make_corpus] {label}: {done}/{total}", flush=True)

    if nj <= 1 or total <= 1:
        for i, item in enumerate(items):
            results[i] = fn(item)
            report(i + 1)
        return results
    # fork: the workers only need this module, and spawning would re-import the package.
    with multiprocessing.get_context("fork").Pool(nj) as pool:
        done = 0
        for i, res in pool.imap_unordered(_indexed, ((fn, i, it) for i, it in enumerate(items))):
            results[i] = res
            done += 1
            report(done)
    return results


def _indexed(arg: Tuple[Callable, int, object]) -> Tuple[int, object]:
    fn, i, item = arg
    return i, fn(item)


def iter_chunks(seq: Sequence, sizes: Iterable[int]) -> List[Sequence]:
    """Split ``seq`` into consecutive chunks of the given sizes."""
    out, start = [], 0
    for n in sizes:
        out.append(seq[start:start + n])
        start += n
    return out


def split_evenly(total: int, parts: int) -> List[int]:
    """``total`` as ``parts`` near-equal sizes, larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
