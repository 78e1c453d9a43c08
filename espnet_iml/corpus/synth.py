"""Speech synthesis for our synthetic stand-ins of LibriSpeech and AiShell-1 (OUR DESIGN).

Three synthesizers from Debian make the base voices: espeak-ng (formant synthesis, many
accents and variants, Mandarin from pinyin), flite (five diphone and clustergen voices) and
festival (a diphone and an HTS voice). A speaker is a base voice plus a per-speaker transform
in sox: speaking rate, pitch shift (which also moves the formants, like a longer or shorter
vocal tract), spectral tilt (bass/treble), and for some speakers room reverberation. "Hard"
speakers (LibriSpeech's "other" subsets) get rough espeak-ng variants, extreme rate and pitch,
band-limited channels, stronger reverberation and additive noise. Each utterance jitters the
speaker's rate, pitch, padding and level a little.

sox runs with -D (no dither) and -R (fixed random seed) and the noise is drawn in Python from
a per-utterance seed, so the same job gives the same bytes on every run.
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
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

SAMPLE_RATE = 16000
MIN_SECONDS = 0.3  # anything shorter means the synthesizer produced (almost) nothing
ESPEAK_BASE_SPEED = 165  # espeak-ng's -s at rate 1.0
# Speaking rate of English speakers relative to the synthesizers' defaults (OUR CALIBRATION).
# At their defaults espeak-ng, flite and festival read 215-265 words a minute once the
# silences are trimmed; with BPE pieces of ~4 per word that is ~15 tokens a second against
# the encoder's 25 frames a second, too dense for CTC to learn in a short budget (Mandarin
# espeak-ng reads ~3.4 characters a second). 0.7 puts clean speakers at LibriSpeech's pace,
# about 130-190 words a minute.
ENGLISH_RATE_SCALE = 0.7

ENGLISH_VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)
MANDARIN_VOICES = ("cmn-latn-pinyin",)
FLITE_VOICES = ("slt", "awb", "rms", "kal16", "kal")
FESTIVAL_VOICES = ("voice_kal_diphone", "voice_cmu_us_slt_arctic_hts")
# Share of speakers per synthesizer (festival is slow: ~0.5-0.9 s per utterance).
ENGLISH_ENGINES = (("espeak", 0.52), ("flite", 0.4), ("festival", 0.08))
MANDARIN_ENGINES = (("espeak", 1.0),)
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
FEMALE_VOICES = frozenset(
    {"f1", "f2", "f3", "f4", "f5", "Annie", "belinda", "linda", "steph", "grandma",
     "anika", "aunty", "slt", "voice_cmu_us_slt_arctic_hts"}
)
PROGRAMS = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}


class ToolMissing(RuntimeError):
    """A synthesizer, one of its voices, or sox is not installed."""


def _listed_voices(program: str) -> set:
    if program == "espeak-ng":
        out = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True).stdout
        return {line.split()[1] for line in out.splitlines()[1:] if len(line.split()) > 1}
    if program == "flite":
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
        return set(out.split(":", 1)[-1].split())
    return set()


def check_tools(voices: Sequence[str] = (), engines: Sequence[str] = ("espeak",)) -> None:
    """Raise ToolMissing naming every missing program or voice, and the fix."""
    programs = ["sox"] + [PROGRAMS[e] for e in engines]
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise ToolMissing(
            f"{', '.join(missing)} not found on PATH; run ./setup.sh (it apt-installs sox, "
            "espeak-ng, flite, festival with festvox-kallpc16k and festvox-us-slt-hts)"
        )
    absent = []
    # An unknown espeak-ng variant falls back silently, an unknown voice fails: check voices.
    known = _listed_voices("espeak-ng")
    absent += [v for v in voices if v not in known]
    if "flite" in engines:
        known = _listed_voices("flite")
        absent += [f"flite {v}" for v in FLITE_VOICES if v not in known]
    if "festival" in engines:
        roots = [Path("/usr/share/festival/voices")]
        have = {p.name for r in roots if r.is_dir() for p in r.glob("*/*")}
        absent += [f"festival {v}" for v in FESTIVAL_VOICES if v[len("voice_"):] not in have]
    if absent:
        raise ToolMissing(
            f"missing synthesizer voices: {', '.join(absent)}; run ./setup.sh (espeak-ng >= "
            "1.51, flite, festival, festvox-kallpc16k, festvox-us-slt-hts)"
        )


def derive_seed(*parts: object) -> int:
    """A stable 64-bit seed from any parts (hash() is salted per process, sha256 is not)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a base voice and the sox transform that makes it distinct.

    rate: speaking rate relative to the synthesizer's default (> 1 is faster).
    pitch: espeak-ng's base pitch (0-99); other synthesizers ignore it.
    shift: sox pitch shift in cents; bass, treble: spectral tilt in dB.
    reverb: sox reverberance in percent (0: dry); band: (highpass, lowpass) Hz or None.
    """

    engine: str
    voice: str
    rate: float
    pitch: int
    shift: int
    bass: float
    treble: float
    reverb: int = 0
    band: Optional[Tuple[int, int]] = None
    hard: bool = False

    @property
    def gender(self) -> str:
        base = self.voice.split("+")[-1]
        female = base in FEMALE_VOICES
        # A large upward shift turns a male base voice into a higher voice, and vice versa.
        if self.shift > 250:
            female = True
        elif self.shift < -250:
            female = False
        return "F" if female else "M"

    @property
    def description(self) -> str:
        extra = f" reverb {self.reverb}" if self.reverb else ""
        extra += f" band {self.band[0]}-{self.band[1]}" if self.band else ""
        return (f"{self.engine} {self.voice} rate {self.rate:.2f} pitch {self.pitch} "
                f"shift {self.shift:+d} tilt {self.bass:+.1f}/{self.treble:+.1f}{extra}")


def _base_voices(engine: str, voices: Sequence[str], hard: bool) -> List[str]:
    if engine == "espeak":
        variants = HARD_VARIANTS if hard else CLEAN_VARIANTS
        return [f"{v}+{x}" for v in voices for x in variants]
    return list(FLITE_VOICES if engine == "flite" else FESTIVAL_VOICES)


def make_speakers(
    rng: random.Random, voices: Sequence[str], n: int, hard: bool,
    used: Dict[str, int], engines: Sequence[Tuple[str, float]] = (("espeak", 1.0),),
    rate_scale: float = 1.0,
) -> List[Speaker]:
    """n speakers; base voices are drawn least-used first (``used`` counts them, updated),
    so held-out speakers drawn first get base voices no other speaker has, while they last.
    ``rate_scale`` multiplies every speaker's rate (the language's base pace)."""
    names = [e for e, _ in engines]
    weights = [w for _, w in engines]
    speakers = []
    for _ in range(n):
        engine = rng.choices(names, weights)[0]
        pool = _base_voices(engine, voices, hard)
        fewest = min(used.get(v, 0) for v in pool)
        voice = rng.choice([v for v in pool if used.get(v, 0) == fewest])
        used[voice] = used.get(voice, 0) + 1
        if hard:
            # Extreme on purpose: very slow or very fast, very low or very high.
            rate = rng.choice((rng.uniform(0.7, 0.8), rng.uniform(1.3, 1.45)))
            pitch = rng.choice((rng.randint(5, 20), rng.randint(80, 95)))
            shift = rng.choice((rng.randint(-550, -300), rng.randint(300, 550)))
            bass, treble = rng.uniform(-8, 8), rng.uniform(-8, 8)
            reverb = rng.randint(40, 80) if rng.random() < 0.5 else 0
            band = (rng.randint(200, 400), rng.randint(3000, 4000)) if rng.random() < 0.4 \
                else None
        else:
            rate = rng.uniform(0.85, 1.2)
            pitch = rng.randint(25, 75)
            shift = rng.randint(-300, 300)
            bass, treble = rng.uniform(-4, 4), rng.uniform(-4, 4)
            reverb = rng.randint(10, 30) if rng.random() < 0.2 else 0
            band = None
        speakers.append(Speaker(engine, voice, round(rate * rate_scale, 3), pitch, shift,
                                round(bass, 1), round(treble, 1), reverb, band, hard))
    return speakers


@dataclass(frozen=True)
class Job:
    """Everything needed to render one utterance; all randomness is already drawn."""

    text: str
    out: str
    speaker: Speaker
    rate: float
    pitch: int
    shift: int
    pad_start: float
    pad_end: float
    gain_db: float
    snr_db: Optional[float] = None
    noise_seed: int = 0


def make_job(speaker: Speaker, text: str, out: Path, rng: random.Random) -> Job:
    """Draw the per-utterance jitter of ``speaker`` for ``text`` rendered to ``out``."""
    snr = round(rng.uniform(5.0, 15.0), 2) if speaker.hard else None
    return Job(
        text=text,
        out=str(out),
        speaker=speaker,
        rate=round(speaker.rate * rng.uniform(0.93, 1.07), 3),
        pitch=min(99, max(0, speaker.pitch + rng.randint(-6, 6))),
        shift=speaker.shift + rng.randint(-40, 40),
        pad_start=round(rng.uniform(0.05, 0.25), 3),
        pad_end=round(rng.uniform(0.05, 0.25), 3),
        gain_db=round(rng.uniform(1.0, 6.0), 2),
        snr_db=snr,
        noise_seed=rng.getrandbits(63),
    )


def _run(cmd: List[str], stdin: Optional[str] = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, input=None if stdin is None else stdin.encode())
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err}")


def _sox(inp: str, out: str, effects: List[str]) -> None:
    # --comment "" keeps sox's "Processed by SoX" tag out of FLAC files.
    _run(["sox", "-D", "-R", "-V1", inp, "-r", str(SAMPLE_RATE), "-b", "16", "-c", "1",
          "-e", "signed-integer", "--comment", "", out, *effects])


def synthesize(job: Job, raw: str) -> None:
    """The base voice reads job.text into the wav file ``raw`` at the job's rate."""
    spk = job.speaker
    if spk.engine == "espeak":
        speed = str(max(80, round(ESPEAK_BASE_SPEED * job.rate)))
        _run(["espeak-ng", "-v", spk.voice, "-s", speed, "-p", str(job.pitch), "-w", raw,
              job.text])
    elif spk.engine == "flite":
        _run(["flite", "-voice", spk.voice, "--setf", f"duration_stretch={1 / job.rate:.3f}",
              "-t", job.text, "-o", raw])
    elif spk.engine == "festival":
        _run(["text2wave", "-eval", f"({spk.voice})", "-eval",
              f"(Parameter.set 'Duration_Stretch {1 / job.rate:.3f})", "-o", raw], job.text)
    else:
        raise ValueError(f"unknown synthesizer {spk.engine!r}")


def transform_effects(job: Job) -> List[str]:
    """The sox effects that turn the base voice into this speaker (after trimming)."""
    spk = job.speaker
    # Resample first: a downward pitch shift of an 8 kHz voice (flite kal) would otherwise
    # leave treble's 3 kHz corner above the shifted Nyquist frequency.
    fx = ["rate", str(SAMPLE_RATE), "pitch", str(job.shift), "bass", str(spk.bass), "treble", str(spk.treble)]
    if spk.band:
        fx += ["highpass", str(spk.band[0]), "lowpass", str(spk.band[1])]
    if spk.reverb:
        fx += ["reverb", str(spk.reverb)]
    return fx

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
    import numpy as np  # the recipes' Python always has it; imported here to keep startup light

    x = np.frombuffer(samples.tobytes(), dtype=np.int16).astype(np.float64)
    power = float(np.mean(x * x)) if x.size else 0.0
    sigma = math.sqrt(power / (10.0 ** (snr_db / 10.0)))
    noisy = np.rint(x + np.random.default_rng(seed).normal(0.0, sigma, x.size))
    return array.array("h", np.clip(noisy, -32768, 32767).astype(np.int16).tobytes())


def render(job: Job) -> float:
    """Synthesise ``job`` into job.out (.wav or .flac); return its duration in seconds."""
    with tempfile.TemporaryDirectory(prefix="iml-synth-") as tmp:
        raw = f"{tmp}/raw.wav"
        synthesize(job, raw)
        clean = f"{tmp}/clean.wav"
        level = ["gain", "-n", f"-{job.gain_db}"]
        pad = ["pad", str(job.pad_start), str(job.pad_end)]
        speaker = transform_effects(job)
        # Trim the synthesizer's own leading/trailing silence, then pad our jittered amount.
        trim = ["silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%",
                "reverse"]
        _sox(raw, clean, trim + speaker + level + pad)
        samples = _read_pcm(clean)
        if len(samples) < MIN_SECONDS * SAMPLE_RATE:
            # Trimming ate too much (very quiet synthesis): keep the synthesizer's silence.
            _sox(raw, clean, speaker + level + pad)
            samples = _read_pcm(clean)
        if len(samples) < MIN_SECONDS * SAMPLE_RATE:
            raise RuntimeError(f"{job.speaker.engine} produced no audio for {job.text!r} "
                               f"({job.speaker.voice})")
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
