"""Our synthetic stand-in for LibriSpeech (English), in the released directory layout.

    <out>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac   16 kHz mono FLAC
    <out>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
                                                   "<spk>-<chapter>-<NNNN> UPPER CASE WORDS"
    <out>/LibriSpeech/SPEAKERS.TXT, CHAPTERS.TXT, README.TXT
    <out>/librispeech-lm-norm.txt.gz               LM text, one upper-case sentence a line

The LM text stands in for the normalized book text LibriSpeech publishes beside the audio
(openslr.org/11, the same file name): sentences of the same grammar drawn from their own
random stream, without any sentence that is a dev or test transcript, as the real one leaves
out the books of the dev and test chapters.

All seven subsets are written and non-empty; every speaker belongs to exactly one subset
(dev/test speakers are held out, as in the release, and drawn first so that they get base
voices no training speaker has, while those last). Speakers come from espeak-ng, flite and
festival with per-speaker sox transforms (espnet_iml.corpus.synth). The "other" subsets use
rough voices, extreme rate and pitch, band-limited channels, reverberation and additive noise
(5-15 dB SNR).
"""

import gzip
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Set, Tuple

from espnet_iml.corpus import synth, text

# (subset, split, hard speakers?) in the order speakers and ids are assigned.
SUBSETS: Tuple[Tuple[str, str, bool], ...] = (
    ("train-clean-100", "train", False),
    ("train-clean-360", "train", False),
    ("train-other-500", "train", True),
    ("dev-clean", "dev", False),
    ("dev-other", "dev", True),
    ("test-clean", "test", False),
    ("test-other", "test", True),
)
SPLITS = ("train", "dev", "test")
# Totals per split, spread evenly over that split's subsets.
SIZES: Dict[str, Tuple[int, int, int]] = {"tiny": (48, 12, 12), "small": (3000, 200, 200)}
MIN_COUNTS = (3, 2, 2)  # one utterance per subset at least
TOP_DIRS = ("LibriSpeech",)
LM_TEXT = "librispeech-lm-norm.txt.gz"
OUTPUTS = TOP_DIRS + (LM_TEXT,)  # everything generate() writes, for removal
LM_SENTENCES_PER_TRAIN_UTT = 60  # small: 180,000 sentences (about 1.4 M words)
MIN_LM_SENTENCES = 1000
VOICES = synth.ENGLISH_VOICES
ENGINES = tuple(e for e, _ in synth.ENGLISH_ENGINES)


@dataclass(frozen=True)
class Chapter:
    subset: str
    spk: int
    chapter: int
    speaker: synth.Speaker
    lines: Tuple[Tuple[str, str], ...]  # (utterance id, transcript)
    jobs: Tuple[synth.Job, ...]

    @property
    def dir(self) -> str:
        return f"{self.subset}/{self.spk}/{self.chapter}"


def subset_counts(counts: Sequence[int]) -> Dict[str, int]:
    """Utterances per subset from the per-split totals."""
    per_split = dict(zip(SPLITS, counts))
    out: Dict[str, int] = {}
    for split in SPLITS:
        names = [name for name, s, _ in SUBSETS if s == split]
        out.update(zip(names, synth.split_evenly(per_split[split], len(names))))
    return out


def speakers_for(split: str, n: int) -> int:
    """How many speakers share the ``n`` utterances of one subset (several, capped)."""
    lo, hi, per = (2, 400, 15) if split == "train" else (2, 20, 10)
    return max(1, min(n, max(lo, min(hi, n // per))))


def plan(out: Path, seed: int, counts: Sequence[int]) -> List[Chapter]:
    """Every chapter with its speaker, transcript lines and rendering jobs."""
    root = out / "LibriSpeech"
    n_per_subset = subset_counts(counts)
    rng = random.Random(synth.derive_seed("librispeech", seed, "speakers"))
    n_spk = {name: speakers_for(split, n_per_subset[name]) for name, split, _ in SUBSETS}
    # Real-looking, unique numeric ids (LibriSpeech ids are unpadded integers).
    spk_ids = iter(rng.sample(range(19, 9000), sum(n_spk.values())))
    chapter_ids = iter(rng.sample(range(100, 300000), 2 * sum(n_spk.values())))
    used: Dict[str, int] = {}
    # Held-out speakers first: they get the base voices no one else has, while those last.
    pools = {}
    for name, split, hard in sorted(SUBSETS, key=lambda s: s[1] == "train"):
        pools[name] = synth.make_speakers(rng, synth.ENGLISH_VOICES, n_spk[name], hard, used,
                                          synth.ENGLISH_ENGINES, synth.ENGLISH_RATE_SCALE)
    chapters: List[Chapter] = []
    for name, split, hard in SUBSETS:
        pool = pools[name]
        text_rng = random.Random(synth.derive_seed("librispeech", seed, name, "text"))
        jitter_rng = random.Random(synth.derive_seed("librispeech", seed, name, "jitter"))
        for speaker, n_utt in zip(pool, synth.split_evenly(n_per_subset[name], n_spk[name])):
            spk = next(spk_ids)
            # Readers with enough utterances read two chapters, as many real ones do.
            for n_ch in synth.split_evenly(n_utt, 2 if n_utt >= 8 else 1):
                chapter = next(chapter_ids)
                lines, jobs = [], []
                for k in range(n_ch):
                    uid = f"{spk}-{chapter}-{k:04d}"
                    words, tts = text.english_sentence(text_rng)
                    path = root / name / str(spk) / str(chapter) / f"{uid}.flac"
                    lines.append((uid, words))
                    jobs.append(synth.make_job(speaker, tts, path, jitter_rng))
                chapters.append(Chapter(name, spk, chapter, speaker, tuple(lines), tuple(jobs)))
    return chapters


def write_transcripts(root: Path, chapters: List[Chapter]) -> None:
    for ch in chapters:
        d = root / ch.dir
        d.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{uid} {words}\n" for uid, words in ch.lines)
        (d / f"{ch.spk}-{ch.chapter}.trans.txt").write_text(body, encoding="utf-8")


def write_metadata(root: Path, chapters: List[Chapter], seconds: Dict[str, float]) -> None:
    """SPEAKERS.TXT, CHAPTERS.TXT (LibriSpeech's column formats) and a README.TXT."""
    minutes = {ch.chapter: sum(seconds[j.out] for j in ch.jobs) / 60 for ch in chapters}
    spk_rows: Dict[int, Tuple[str, str, float, str]] = {}
    for ch in chapters:
        sex, subset, mins, name = spk_rows.get(ch.spk, (ch.speaker.gender, ch.subset, 0.0, ""))
        spk_rows[ch.spk] = (sex, subset, mins + minutes[ch.chapter], ch.speaker.description)
    speakers = [
        "; Synthetic speakers of espnet_iml's LibriSpeech stand-in (espeak-ng, flite, festival).\n",
        ";ID  |SEX| SUBSET           |MINUTES| NAME\n",
    ] + [
        f"{spk:<5}| {sex} | {subset:<17}| {mins:5.2f} | {name}\n"
        for spk, (sex, subset, mins, name) in sorted(spk_rows.items())
    ]
    (root / "SPEAKERS.TXT").write_text("".join(speakers), encoding="utf-8")
    rows = [
        "; Synthetic chapters of espnet_iml's LibriSpeech stand-in (espeak-ng).\n",
        ";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE\n",
    ] + [
        f"{ch.chapter:<7}| {ch.spk:<5}| {minutes[ch.chapter]:5.2f} | {ch.subset:<17}| "
        f"{0:<5}| {0:<6}| Synthetic chapter {ch.chapter} | Synthetic sentences\n"
        for ch in sorted(chapters, key=lambda c: c.chapter)
    ]
    (root / "CHAPTERS.TXT").write_text("".join(rows), encoding="utf-8")
    (root / "README.TXT").write_text(
        "Synthetic stand-in for LibriSpeech generated by espnet_iml.bin.make_corpus\n"
        "(espeak-ng, flite and festival voices + sox); same directory layout and transcript\n"
        "format as the release.\n",
        encoding="utf-8",
    )


def write_lm_text(path: Path, seed: int, n: int, held_out: Set[str]) -> int:
    """``n`` grammar sentences minus ``held_out`` ones, gzipped deterministically."""
    rng = random.Random(synth.derive_seed("librispeech", seed, "lm-text"))
    kept = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for _ in range(n):
            words, _tts = text.english_sentence(rng)
            if words not in held_out:
                gz.write(f"{words}\n".encode("utf-8"))
                kept += 1
    return kept


def generate(out: Path, seed: int, counts: Sequence[int], nj: int, verbose: bool = True) -> int:
    """Build the corpus under ``out``; return the number of utterances."""
    chapters = plan(out, seed, counts)
    root = out / "LibriSpeech"
    write_transcripts(root, chapters)
    held_out = {words for ch in chapters if not ch.subset.startswith("train")
                for _uid, words in ch.lines}
    n_lm = max(MIN_LM_SENTENCES, LM_SENTENCES_PER_TRAIN_UTT * counts[0])
    kept = write_lm_text(out / LM_TEXT, seed, n_lm, held_out)
    if verbose:
        print(f"[make_corpus] LM text: {kept} sentences ({n_lm - kept} dev/test transcripts "
              f"left out) -> {out / LM_TEXT}")
    jobs = [job for ch in chapters for job in ch.jobs]
    durations = synth.run_pool(synth.render, jobs, nj, "librispeech utterances", verbose)
    write_metadata(root, chapters, {j.out: d for j, d in zip(jobs, durations)})
    return len(jobs)
