"""Synthetic AiShell-1 / LibriSpeech stand-ins: exact layouts, audio, speakers, determinism.

Tiny corpora are generated once per module through the CLI (a few seconds on 2 cores).
"""

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import wave
from pathlib import Path
from typing import Dict, List, Set

import pytest
import soundfile

from espnet_iml.corpus import aishell, generate, librispeech, text

ROOT = Path(__file__).resolve().parents[1]
AISHELL_COUNTS = aishell.SIZES["tiny"]
LIBRI_COUNTS = librispeech.SIZES["tiny"]
SUBSETS = [name for name, _, _ in librispeech.SUBSETS]


def make_corpus(*args: str, env: Dict[str, str] = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "espnet_iml.bin.make_corpus", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


def tree_hash(root: Path) -> str:
    """sha256 over every file's relative path and bytes."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpora")
    for corpus in ("aishell", "librispeech"):
        proc = make_corpus("--corpus", corpus, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert f"{corpus}: " in proc.stdout
    return out


@pytest.fixture(scope="module")
def aishell_members(out) -> Dict[str, List[str]]:
    """Speaker -> member names of its tar.gz."""
    wav_dir = out / "data_aishell" / "wav"
    members = {}
    for archive in sorted(wav_dir.iterdir()):
        with tarfile.open(archive, "r:gz") as tar:
            members[archive.name[: -len(".tar.gz")]] = tar.getnames()
    return members


@pytest.fixture(scope="module")
def aishell_extracted(out, tmp_path_factory) -> Path:
    """data_aishell/wav as the recipe sees it after unpacking every speaker archive."""
    dest = tmp_path_factory.mktemp("aishell_wav")
    for archive in sorted((out / "data_aishell" / "wav").iterdir()):
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, filter="data")
    return dest


def test_aishell_archives_and_ids(out, aishell_members):
    n_spk = sum(aishell.speakers_for(s, n) for s, n in zip(aishell.SPLITS, AISHELL_COUNTS))
    assert sorted(os.listdir(out / "data_aishell" / "wav")) == [
        f"S{i:04d}.tar.gz" for i in range(2, 2 + n_spk)
    ]
    split_order, per_split = [], {s: 0 for s in aishell.SPLITS}
    for spk, names in aishell_members.items():
        split = names[0].rstrip("/")
        assert split in aishell.SPLITS
        # tarfile reports directory members without their trailing slash.
        assert names[:2] == [split, f"{split}/{spk}"]
        wavs = names[2:]
        assert wavs == [f"{split}/{spk}/BAC009{spk}W{k:04d}.wav" for k in range(1, len(wavs) + 1)]
        split_order.append(split)
        per_split[split] += len(wavs)
    # Train speakers first, then dev, then test.
    assert split_order == sorted(split_order, key=aishell.SPLITS.index)
    assert tuple(per_split[s] for s in aishell.SPLITS) == AISHELL_COUNTS


def test_aishell_transcript(out, aishell_members):
    lines = (out / aishell.TRANSCRIPT).read_text(encoding="utf-8").splitlines()
    assert lines == sorted(lines)
    ids = set()
    for line in lines:
        assert re.fullmatch(r"BAC009S\d{4}W\d{4}( [^ \t]+){3,10}", line), line
        uid, *words = line.split(" ")
        assert all(w in text.MANDARIN_WORDS for w in words), line
        ids.add(uid)
    wav_ids = {Path(n).stem for ns in aishell_members.values() for n in ns if n.endswith(".wav")}
    assert ids == wav_ids
    lexicon = (out / "resource_aishell" / "lexicon.txt").read_text(encoding="utf-8").split("\n")
    assert any(line.startswith("北京 ") for line in lexicon)
    info = (out / "resource_aishell" / "speaker.info").read_text().split()
    assert info[0] == "0002" and info[1] in ("F", "M")


def check_audio(path: Path) -> None:
    data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    assert rate == 16000 and data.shape[1] == 1, path
    assert data.shape[0] >= 0.3 * 16000 and abs(data).max() > 1000, path


def test_aishell_audio(aishell_extracted):
    wavs = sorted(aishell_extracted.rglob("*.wav"))
    assert len(wavs) == sum(AISHELL_COUNTS)
    assert {p.relative_to(aishell_extracted).parts[0] for p in wavs} == set(aishell.SPLITS)
    for wav in wavs:
        with wave.open(str(wav), "rb") as w:  # plain PCM wav, as the release
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            assert w.getcomptype() == "NONE" and w.getnframes() > 0
        check_audio(wav)


def test_aishell_speakers_disjoint(aishell_extracted):
    by_split: Dict[str, Set[str]] = {
        s: {p.name for p in (aishell_extracted / s).iterdir()} for s in aishell.SPLITS
    }
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["dev"] or by_split["train"] & by_split["test"]
                or by_split["dev"] & by_split["test"])
    _, speakers = aishell.plan(Path("unused"), 0, AISHELL_COUNTS)
    configs = [s.voice for s in speakers.values()]
    assert len(configs) == len(set(configs))  # tiny: each speaker a distinct base voice


def librispeech_files(out: Path) -> Dict[str, List[Path]]:
    root = out / "LibriSpeech"
    return {sub: sorted((root / sub).rglob("*.flac")) for sub in SUBSETS}


def test_librispeech_layout(out):
    vocabulary = set(text.english_vocabulary())
    root = out / "LibriSpeech"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(SUBSETS)
    files = librispeech_files(out)
    totals = {s: 0 for s in librispeech.SPLITS}
    for subset, split, _ in librispeech.SUBSETS:
        assert files[subset], subset
        totals[split] += len(files[subset])
        for chapter_dir in {f.parent for f in files[subset]}:
            spk, chapter = chapter_dir.parent.name, chapter_dir.name
            assert chapter_dir.parent.parent == root / subset
            assert spk.isdigit() and chapter.isdigit() and not spk.startswith("0")
            names = sorted(p.name for p in chapter_dir.iterdir())
            flacs = [n for n in names if n.endswith(".flac")]
            assert names == sorted(flacs + [f"{spk}-{chapter}.trans.txt"])
            assert flacs == [f"{spk}-{chapter}-{k:04d}.flac" for k in range(len(flacs))]
            lines = (chapter_dir / f"{spk}-{chapter}.trans.txt").read_text().splitlines()
            assert [line.split(" ")[0] for line in lines] == [n[:-5] for n in flacs]
            for line in lines:
                assert re.fullmatch(r"\d+-\d+-\d{4}( [A-Z]+){3,12}", line), line
                assert all(w.lower() in vocabulary for w in line.split()[1:])
    assert tuple(totals[s] for s in librispeech.SPLITS) == LIBRI_COUNTS


def test_librispeech_lm_text(out):
    """The LM text beside LibriSpeech/: grammar sentences in the transcripts' form, none of
    them a dev or test transcript, one per line, in a gzip without a timestamp."""
    raw = (out / librispeech.LM_TEXT).read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    lines = gzip.decompress(raw).decode("utf-8").splitlines()
    n = librispeech.LM_SENTENCES_PER_TRAIN_UTT * LIBRI_COUNTS[0]
    held_out = {line.split(" ", 1)[1] for path in (out / "LibriSpeech").rglob("*.trans.txt")
                if not path.parts[-4].startswith("train") for line in path.read_text().splitlines()}
    assert n - len(held_out) * 10 < len(lines) <= n
    assert not held_out & set(lines)
    vocabulary = set(text.english_vocabulary())
    for line in lines:
        words = line.split(" ")
        assert 3 <= len(words) <= text.MAX_WORDS and line == line.upper(), line
        assert all(w.lower() in vocabulary for w in words), line


def test_lm_text_leaves_out_held_out_sentences(tmp_path):
    """Sentences the stream would produce are dropped when held out, every time they come."""
    path = tmp_path / "lm.txt.gz"
    librispeech.write_lm_text(path, 3, 400, set())
    every = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert len(every) == 400
    held_out = set(every[:25])
    kept = librispeech.write_lm_text(path, 3, 400, held_out)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert kept == len(lines) == sum(line not in held_out for line in every)
    assert lines == [line for line in every if line not in held_out]


def test_librispeech_speakers(out):
    files = librispeech_files(out)
    owner: Dict[str, str] = {}
    for subset, paths in files.items():
        for spk in {p.parent.parent.name for p in paths}:
            assert owner.setdefault(spk, subset) == subset, f"speaker {spk} in two subsets"
    rows = [line.split("|") for line in (out / "LibriSpeech" / "SPEAKERS.TXT").read_text()
            .splitlines() if not line.startswith(";")]
    assert {r[0].strip(): r[2].strip() for r in rows} == owner
    names = [r[4].strip() for r in rows]
    assert len(names) == len(set(names))  # distinct voice/variant/pitch/speed per speaker
    chapters = (out / "LibriSpeech" / "CHAPTERS.TXT").read_text().splitlines()
    assert len([c for c in chapters if not c.startswith(";")]) == len(
        {p.parent for paths in files.values() for p in paths})


def test_librispeech_audio_and_other_noise(out):
    for subset, paths in librispeech_files(out).items():
        for path in paths:
            check_audio(path)
            data, _ = soundfile.read(str(path), dtype="int16")
            # The first 25 ms of the leading pad (>= 50 ms) are (near) digital silence in
            # the clean subsets, noise in the "other" ones.
            lead = abs(data[:400].astype(int)).max()
            assert (lead > 20 if "-other" in subset else lead <= 2), (path.name, lead)


def test_deterministic(out, tmp_path):
    again = tmp_path / "again"
    # Different parallelism on purpose: the output must not depend on it.
    assert generate("aishell", again, nj=1, verbose=False)
    assert generate("librispeech", again, nj=3, verbose=False)
    assert tree_hash(again) == tree_hash(out)
    seed0, seed1 = (aishell.plan(Path("unused"), s, AISHELL_COUNTS)[0] for s in (0, 1))
    assert [u.words for u in seed0] != [u.words for u in seed1]


def test_rerun_is_noop(out):
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    for corpus in ("aishell", "librispeech"):
        proc = make_corpus("--corpus", corpus, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert "already complete" in proc.stdout and "nothing to do" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_mismatched_rerun_errors(out):
    digest = tree_hash(out)
    for extra in (["--seed", "1"], ["--size", "small"], ["--train", "47"]):
        proc = make_corpus("--corpus", "aishell", "--out", str(out), *extra)
        assert proc.returncode != 0
        assert "--force" in proc.stderr
    assert tree_hash(out) == digest


def test_force_replaces(tmp_path):
    args = ["--corpus", "librispeech", "--out", str(tmp_path), "--train", "3", "--dev", "2",
            "--test", "2", "--quiet"]
    assert make_corpus(*args).returncode == 0
    proc = make_corpus(*args, "--seed", "7", "--force")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / ".done-librispeech").read_text())["seed"] == 7
    assert sum(len(v) for v in librispeech_files(tmp_path).values()) == 7


def test_refuses_foreign_corpus(tmp_path):
    real = tmp_path / "LibriSpeech" / "dev-clean"
    real.mkdir(parents=True)
    (real / "keep.txt").write_text("not ours")
    proc = make_corpus("--corpus", "librispeech", "--out", str(tmp_path), "--force")
    assert proc.returncode != 0 and "refusing" in proc.stderr
    assert (real / "keep.txt").read_text() == "not ours"


def test_bad_counts(tmp_path):
    proc = make_corpus("--corpus", "librispeech", "--out", str(tmp_path), "--dev", "1")
    assert proc.returncode != 0 and "--dev >= 2" in proc.stderr
    assert not (tmp_path / "LibriSpeech").exists()


def test_missing_synthesizer_named_before_any_work(tmp_path):
    bin_dir = tmp_path / "bin"  # espeak-ng and sox reachable, flite and festival not
    bin_dir.mkdir()
    for tool in ("espeak-ng", "sox"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = dict(os.environ, PATH=str(bin_dir))
    proc = make_corpus("--corpus", "librispeech", "--out", str(tmp_path / "c"), env=env)
    assert proc.returncode != 0
    assert "flite" in proc.stderr and "text2wave" in proc.stderr and "./setup.sh" in proc.stderr
    assert not (tmp_path / "c" / "LibriSpeech").exists()


def test_missing_tools_message(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # neither espeak-ng nor sox reachable
    proc = make_corpus("--corpus", "aishell", "--out", str(tmp_path / "c"), env=env)
    assert proc.returncode != 0
    assert "espeak-ng" in proc.stderr and "./setup.sh" in proc.stderr
    assert not (tmp_path / "c" / "data_aishell").exists()
