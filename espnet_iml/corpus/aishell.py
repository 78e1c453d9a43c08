"""Our synthetic stand-in for AiShell-1 (Mandarin), in the released directory layout.

    <out>/data_aishell/wav/S0002.tar.gz ...        one archive per speaker; extracted inside
                                                   data_aishell/wav it yields
                                                   <split>/<SPK>/BAC009<SPK>W0001.wav
    <out>/data_aishell/transcript/aishell_transcript_v0.8.txt
                                                   "BAC009S0002W0001 word word ...", sorted
    <out>/resource_aishell/lexicon.txt, speaker.info

Speakers are numbered from S0002: train speakers first, then dev, then test (disjoint, as in
the release). Audio: 16 kHz 16-bit mono PCM wav synthesised by espeak-ng from pinyin.
"""

import gzip
import io
import random
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from espnet_iml.corpus import synth, text

SPLITS = ("train", "dev", "test")
SIZES: Dict[str, Tuple[int, int, int]] = {"tiny": (48, 8, 8), "small": (3000, 150, 150)}
TRANSCRIPT = "data_aishell/transcript/aishell_transcript_v0.8.txt"
TOP_DIRS = ("data_aishell", "resource_aishell")
OUTPUTS = TOP_DIRS  # everything generate() writes, for removal
VOICES = synth.MANDARIN_VOICES
ENGINES = tuple(e for e, _ in synth.MANDARIN_ENGINES)
# Fixed archive timestamp (2017-01-01) so tar.gz bytes do not depend on when they were made.
ARCHIVE_MTIME = 1483228800


@dataclass(frozen=True)
class Utterance:
    uid: str
    split: str
    spk: str
    words: str
    job: synth.Job


def speakers_for(split: str, n: int) -> int:
    """How many speakers share ``n`` utterances of ``split`` (several, capped)."""
    lo, hi, per = (4, 400, 15) if split == "train" else (2, 12, 12)
    return max(1, min(n, max(lo, min(hi, n // per))))


def plan(
    out: Path, seed: int, counts: Sequence[int]
) -> Tuple[List[Utterance], Dict[str, synth.Speaker]]:
    """All utterances (text, speaker, jitter, staging path) and the speakers by id."""
    stage = out / "data_aishell" / ".stage"
    spk_rng = random.Random(synth.derive_seed("aishell", seed, "speakers"))
    used: Dict[str, int] = {}
    # Held-out speakers first: they get the base voices no one else has, while those last.
    pools = {
        split: synth.make_speakers(spk_rng, synth.MANDARIN_VOICES, speakers_for(split, n),
                                   False, used, synth.MANDARIN_ENGINES)
        for split, n in sorted(zip(SPLITS, counts), key=lambda s: s[0] == "train")
    }
    speakers: Dict[str, synth.Speaker] = {}
    utts: List[Utterance] = []
    next_id = 2  # the release starts at S0002
    for split, n in zip(SPLITS, counts):
        n_spk = speakers_for(split, n)
        pool = pools[split]
        text_rng = random.Random(synth.derive_seed("aishell", seed, split, "text"))
        jitter_rng = random.Random(synth.derive_seed("aishell", seed, split, "jitter"))
        for speaker, n_utt in zip(pool, synth.split_evenly(n, n_spk)):
            spk = f"S{next_id:04d}"
            next_id += 1
            speakers[spk] = speaker
            for k in range(1, n_utt + 1):
                uid = f"BAC009{spk}W{k:04d}"
                words, pinyin = text.mandarin_sentence(text_rng)
                path = stage / split / spk / f"{uid}.wav"
                job = synth.make_job(speaker, pinyin, path, jitter_rng)
                utts.append(Utterance(uid, split, spk, words, job))
    return utts, speakers


def _tarinfo(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = size
    return info


def pack_speaker(args: Tuple[str, str, str, str]) -> str:
    """Write <wav_dir>/<spk>.tar.gz holding <split>/<spk>/*.wav from the staging dir."""
    stage, split, spk, wav_dir = args
    src = Path(stage) / split / spk
    dest = Path(wav_dir) / f"{spk}.tar.gz"
    tmp = dest.with_suffix(".tmp")
    # gzip's header holds a name and an mtime; fix both so the bytes are reproducible.
    with open(tmp, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            tar.addfile(_tarinfo(f"{split}/", directory=True))
            tar.addfile(_tarinfo(f"{split}/{spk}/", directory=True))
            for wav in sorted(src.iterdir()):
                data = wav.read_bytes()
                tar.addfile(_tarinfo(f"{split}/{spk}/{wav.name}", len(data)), io.BytesIO(data))
    tmp.rename(dest)
    return str(dest)


def write_text_files(out: Path, utts: List[Utterance], speakers: Dict[str, synth.Speaker]) -> None:
    """The transcript and resource_aishell (lexicon, speaker genders)."""
    transcript = out / TRANSCRIPT
    transcript.parent.mkdir(parents=True, exist_ok=True)
    lines = sorted(f"{u.uid} {u.words}\n" for u in utts)
    transcript.write_text("".join(lines), encoding="utf-8")
    resource = out / "resource_aishell"
    resource.mkdir(parents=True, exist_ok=True)
    lexicon = "".join(line + "\n" for line in text.mandarin_lexicon_lines())
    (resource / "lexicon.txt").write_text(lexicon, encoding="utf-8")
    # speaker.info lists the number without the S, as the release does.
    info = "".join(f"{spk[1:]} {s.gender}\n" for spk, s in sorted(speakers.items()))
    (resource / "speaker.info").write_text(info, encoding="utf-8")


def generate(out: Path, seed: int, counts: Sequence[int], nj: int, verbose: bool = True) -> int:
    """Build the corpus under ``out``; return the number of utterances."""
    utts, speakers = plan(out, seed, counts)
    stage = out / "data_aishell" / ".stage"
    synth.run_pool(synth.render, [u.job for u in utts], nj, "aishell utterances", verbose)
    wav_dir = out / "data_aishell" / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    split_of = {u.spk: u.split for u in utts}
    packs = [(str(stage), split_of[spk], spk, str(wav_dir)) for spk in sorted(split_of)]
    synth.run_pool(pack_speaker, packs, nj, "aishell speaker archives", verbose)
    shutil.rmtree(stage)
    write_text_files(out, utts, speakers)
    return len(utts)
