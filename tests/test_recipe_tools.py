"""The data-side recipe tools (espnet_iml.recipe.*) on small generated corpora: exact
outputs, Kaldi data-directory invariants, agreement with sclite, and every bad-input case
(clear message, nothing else lost)."""

import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_iml.recipe import (audio, datadir, fbank, format_audio, kvfile, prep_aishell, prep_librispeech,
                               progress, results, score, speed_perturb, transcripts)

PY = sys.executable
HAVE_SOX = shutil.which("sox") is not None
HAVE_SCLITE = score.find_sclite() is not None
MODULES = ("prep_aishell", "prep_librispeech", "datadir", "format_audio", "speed_perturb", "fbank",
           "score", "results", "progress")


# ---------------------------------------------------------------------------------------
# fixtures

def tone(n: int, sr: int = 16000, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """int16 tone plus a little noise (so that every filter-bank channel has energy)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(n)
    return np.round(x * 32767).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray, sr: int = 16000, fmt: str = "WAV") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, sr, subtype="PCM_16", format=fmt)


def lines(path: Path):
    return path.read_text(encoding="utf-8").splitlines()


def assert_sorted_consistent(d: Path):
    errors, _, _ = datadir.validate(d)
    assert errors == [], errors
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "feats.scp"):
        if (d / name).is_file():
            keys = [line.split(" ", 1)[0] for line in lines(d / name)]
            assert keys == sorted(keys) and len(set(keys)) == len(keys), name


def pack(wav_dir: Path, split: str, spk: str, files):
    """<wav_dir>/<spk>.tar.gz with <split>/<spk>/<name>.wav (the AiShell release layout)."""
    with tarfile.open(wav_dir / f"{spk}.tar.gz", "w:gz") as tar:
        for name, samples, sr in files:
            buf = io.BytesIO()
            soundfile.write(buf, samples, sr, subtype="PCM_16", format="WAV")
            data = buf.getvalue()
            info = tarfile.TarInfo(f"{split}/{spk}/{name}.wav")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


AISHELL_TEXT = {
    "BAC009S0002W0001": "今天 天气 很 好",
    "BAC009S0002W0002": "我们 去 公园",
    "BAC009S0002W0003": "他 在 学习",
    "BAC009S0002W0004": "没有 音频 的 句子",   # transcript without audio
    "BAC009S0003W0001": "明天 下雨",
    "BAC009S0003W0002": "",                     # empty transcript
    "BAC009S0004W0001": "开始 工作",
    "BAC009S0004W0002": "好 的",
    "BAC009S0005W0001": "谢谢 大家",
    "BAC009S0005W0002": "再见",
}


@pytest.fixture
def aishell(tmp_path):
    """A tiny AiShell-1 layout with: one transcript without audio, one audio without
    transcript, one empty transcript, one 8 kHz file, one empty wav, one garbage wav."""
    root = tmp_path / "corpus"
    wav_dir = root / "data_aishell" / "wav"
    wav_dir.mkdir(parents=True)
    pack(wav_dir, "train", "S0002", [("BAC009S0002W0001", tone(16000), 16000),
                                     ("BAC009S0002W0002", tone(12000, freq=300), 16000),
                                     ("BAC009S0002W0003", tone(14000, freq=500), 16000)])
    pack(wav_dir, "train", "S0003", [("BAC009S0003W0001", tone(8000, sr=8000, freq=200), 8000),
                                     ("BAC009S0003W0002", tone(9000), 16000),
                                     ("BAC009S0003W0003", tone(9000), 16000)])  # no transcript
    pack(wav_dir, "dev", "S0004", [("BAC009S0004W0001", tone(10000, freq=350), 16000),
                                   ("BAC009S0004W0002", np.zeros(0, np.int16), 16000)])  # empty audio
    # One speaker already unpacked (some mirrors ship it so), one garbage wav in it.
    write_wav(wav_dir / "test" / "S0005" / "BAC009S0005W0001.wav", tone(11000, freq=600))
    (wav_dir / "test" / "S0005" / "BAC009S0005W0002.wav").write_bytes(b"RIFF not really a wav")
    tr = root / prep_aishell.TRANSCRIPT
    tr.parent.mkdir(parents=True)
    tr.write_text("".join(f"{k} {v}\n" for k, v in AISHELL_TEXT.items()), encoding="utf-8")
    return root


def write_chapter(root: Path, subset: str, reader: int, chapter: int, texts, seed=0, skip_audio=(),
                  extra_audio=(), trans=True):
    d = root / "LibriSpeech" / subset / str(reader) / str(chapter)
    d.mkdir(parents=True)
    lines_ = []
    for k, words in enumerate(texts):
        uid = f"{reader}-{chapter}-{k:04d}"
        if k not in skip_audio:
            write_wav(d / f"{uid}.flac", tone(8000 + 1000 * k, seed=seed + k), fmt="FLAC")
        lines_.append(f"{uid} {words}".rstrip())
    for k in extra_audio:
        write_wav(d / f"{reader}-{chapter}-{k:04d}.flac", tone(8000), fmt="FLAC")
    if trans:
        (d / f"{reader}-{chapter}.trans.txt").write_text("\n".join(lines_) + "\n")


@pytest.fixture
def librispeech(tmp_path):
    root = tmp_path / "ls"
    write_chapter(root, "dev-clean", 84, 121123, ["HELLO WORLD", "GOOD MORNING"])
    write_chapter(root, "dev-other", 116, 288045, ["A B C"])
    write_chapter(root, "test-clean", 1089, 134686, ["THE CAT", "SAT DOWN", ""])  # empty transcript
    write_chapter(root, "train-clean-100", 103, 1240, ["ONE TWO", "THREE", "FOUR FIVE"],
                  skip_audio=(1,), extra_audio=(7,))  # transcript w/o audio, audio w/o transcript
    write_chapter(root, "train-clean-100", 19, 198, ["SIX SEVEN", "EIGHT"])
    write_chapter(root, "train-other-500", 20, 205, ["NINE TEN"])
    write_chapter(root, "train-other-500", 25, 300, ["LOST"], trans=False)  # no trans.txt
    (root / "LibriSpeech" / "SPEAKERS.TXT").write_text(
        ";ID  |SEX| SUBSET           |MINUTES| NAME\n84   | F | dev-clean        | 8.02 | Christie\n"
        "116  | M | dev-other        | 8.0 | Steve\n")
    return root


# ---------------------------------------------------------------------------------------
# CLI and the shared key-value module

def test_every_tool_has_argparse_help():
    for m in MODULES:
        r = subprocess.run([PY, "-m", f"espnet_iml.recipe.{m}", "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage:" in r.stdout, (m, r.stderr)


def test_kvfile_sorting_parsing_and_errors(tmp_path):
    p = tmp_path / "text"
    kvfile.write_dict(p, {"b": "x", "B": "y", "a-1": "中\u3000文", "10": "", "1a": "z  z"})
    assert lines(p) == ["10", "1a z  z", "B y", "a-1 中\u3000文", "b x"]  # C-locale order
    assert kvfile.read_dict(p) == {"10": "", "1a": "z  z", "B": "y", "a-1": "中\u3000文", "b": "x"}
    assert kvfile.spk2utt_of({"u2": "s1", "u1": "s1", "u3": "s0"}) == {"s0": ["u3"], "s1": ["u1", "u2"]}
    bad = tmp_path / "bad"
    bad.write_bytes(b"a 1\nb 2\r\n")
    with pytest.raises(kvfile.FormatError, match=r"bad line 2: carriage return"):
        kvfile.read_dict(bad)
    bad.write_bytes(b"a 1\n\na 3\n\xff\xfe x\n")
    problems = []
    assert kvfile.read_dict(bad, problems) == {"a": "1"}
    assert any("line 2: empty line" in m for m in problems)
    assert any("line 3: duplicate key a (first at line 1)" in m for m in problems)
    assert any("line 4: not valid UTF-8" in m for m in problems)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


# ---------------------------------------------------------------------------------------
# prep_aishell

def test_prep_aishell_layout_skips_and_idempotence(aishell, tmp_path, capsys):
    out = tmp_path / "data"
    assert prep_aishell.main(["--corpus", str(aishell), "--out", str(out), "--nj", "2"]) == 0
    log = capsys.readouterr().out
    for split in ("train", "dev", "test"):
        assert_sorted_consistent(out / split)
    text = kvfile.read_dict(out / "train" / "text")
    assert text == {"BAC009S0002W0001": "今天天气很好", "BAC009S0002W0002": "我们去公园",
                    "BAC009S0002W0003": "他在学习", "BAC009S0003W0001": "明天下雨"}
    assert kvfile.read_dict(out / "train" / "utt2spk")["BAC009S0003W0001"] == "S0003"
    assert lines(out / "train" / "spk2utt") == [
        "S0002 BAC009S0002W0001 BAC009S0002W0002 BAC009S0002W0003", "S0003 BAC009S0003W0001"]
    # the empty (0-sample) and the garbage wav are left out at stage 1
    assert sorted(kvfile.read_dict(out / "dev" / "text")) == ["BAC009S0004W0001"]
    wav = kvfile.read_dict(out / "test" / "wav.scp")
    assert sorted(wav) == ["BAC009S0005W0001"]
    assert all(os.path.isabs(v) and Path(v).is_file() for v in wav.values())
    skipped = kvfile.read_dict(out / "local" / "aishell_skipped.txt")
    assert skipped == {"BAC009S0003W0002": "empty transcript",
                       "BAC009S0003W0003": "audio without transcript (train)",
                       "BAC009S0002W0004": "transcript without audio",
                       "BAC009S0004W0002": "empty audio (0 samples) (dev)",
                       "BAC009S0005W0002": "undecodable audio (not a format soundfile reads) (test)"}
    assert "skipped 5 utterance(s)" in log and "1 x empty transcript: BAC009S0003W0002" in log
    # archives were unpacked in place and are kept
    wav_dir = aishell / "data_aishell" / "wav"
    assert (wav_dir / "train" / "S0002" / "BAC009S0002W0001.wav").is_file()
    assert (wav_dir / "S0002.tar.gz").is_file()
    # a re-run unpacks nothing and writes the same files
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    mtime = (wav_dir / "train" / "S0002" / "BAC009S0002W0001.wav").stat().st_mtime_ns
    assert prep_aishell.main(["--corpus", str(aishell), "--out", str(out)]) == 0
    assert "3 already unpacked, unpacking 0" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert (wav_dir / "train" / "S0002" / "BAC009S0002W0001.wav").stat().st_mtime_ns == mtime
    # unpacked files deleted behind the marker's back: unpacked again
    (wav_dir / "train" / "S0002" / "BAC009S0002W0001.wav").unlink()
    assert prep_aishell.main(["--corpus", str(aishell), "--out", str(out)]) == 0
    assert "2 already unpacked, unpacking 1" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_prep_aishell_bad_layouts(aishell, tmp_path, capsys):
    out = tmp_path / "data"

    def err(corpus):
        assert prep_aishell.main(["--corpus", str(corpus), "--out", str(out)]) == 1
        captured = capsys.readouterr()
        return captured.err + captured.out

    assert "corpus directory" in err(tmp_path / "nope") and "does not exist" in err(tmp_path / "nope")
    assert f"expected {tmp_path / 'data_aishell'}/" in err(tmp_path)
    assert "looks like data_aishell itself: pass its parent" in err(aishell / "data_aishell")
    tr = aishell / prep_aishell.TRANSCRIPT
    tr.rename(tmp_path / "moved.txt")
    assert f"expected {aishell}/data_aishell/transcript/aishell_transcript_v0.8.txt" in err(aishell)
    (tmp_path / "moved.txt").rename(tr)
    # a corrupt archive: reported, its speaker skipped, the others kept
    (aishell / "data_aishell" / "wav" / "S0004.tar.gz").write_bytes(gzip.compress(b"garbage"))
    msg = err(aishell)
    assert "no usable utterances for dev" in msg and "the other sets were written" in msg
    assert f"cannot unpack {aishell}/data_aishell/wav/S0004.tar.gz" in msg
    assert (out / "train" / "wav.scp").is_file() and (out / "test" / "wav.scp").is_file()
    assert not (out / "dev").exists()


# ---------------------------------------------------------------------------------------
# prep_librispeech

def test_prep_librispeech_sets_and_skips(librispeech, tmp_path, capsys):
    out = tmp_path / "data"
    assert prep_librispeech.main(["--corpus", str(librispeech), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir() if p.name != "local")
    assert names == ["dev", "dev_clean", "dev_other", "test_clean", "train_960", "train_clean_100",
                     "train_other_500"]
    for n in names:
        assert_sorted_consistent(out / n)
    assert kvfile.read_dict(out / "train_clean_100" / "text") == {
        "103-1240-0000": "ONE TWO", "103-1240-0002": "FOUR FIVE", "19-198-0000": "SIX SEVEN",
        "19-198-0001": "EIGHT"}
    assert kvfile.read_dict(out / "dev_clean" / "utt2spk")["84-121123-0001"] == "84-121123"
    assert kvfile.read_dict(out / "dev" / "spk2gender") == {"84-121123": "f", "116-288045": "m"}
    assert set(kvfile.read_dict(out / "train_960" / "utt2spk")) == (
        set(kvfile.read_dict(out / "train_clean_100" / "utt2spk"))
        | set(kvfile.read_dict(out / "train_other_500" / "utt2spk")))
    assert set(kvfile.read_dict(out / "dev" / "text")) == {"84-121123-0000", "84-121123-0001", "116-288045-0000"}
    assert soundfile.info(kvfile.read_dict(out / "dev" / "wav.scp")["84-121123-0000"]).samplerate == 16000
    skipped = kvfile.read_dict(out / "local" / "librispeech_skipped.txt")
    assert skipped == {
        "103-1240-0001": "transcript without audio (train-clean-100)",
        "103-1240-0007": "audio without transcript (train-clean-100)",
        "1089-134686-0002": "empty transcript (test-clean)",
        "25-300-0000": "audio without transcript (no 25-300.trans.txt in train-other-500)"}
    assert "train-clean-360 not found" in log and "combines only train-clean-100, train-other-500" in log


def test_prep_librispeech_bad_layouts(librispeech, tmp_path, capsys):
    out = tmp_path / "data"

    def err(*args):
        assert prep_librispeech.main(["--out", str(out), *args]) == 1
        return capsys.readouterr().err

    assert "does not exist" in err("--corpus", str(tmp_path / "nope"))
    assert f"expected {tmp_path}/LibriSpeech/<subset>" in err("--corpus", str(tmp_path))
    assert "looks like the LibriSpeech directory itself" in err("--corpus", str(librispeech / "LibriSpeech"))
    assert "not LibriSpeech subsets" in err("--corpus", str(librispeech), "--train_sets", "train-clean-1000")
    msg = err("--corpus", str(librispeech), "--train_sets", "train-clean-360")
    assert "cannot make" in msg and "none of train-clean-360 found" in msg
    assert (out / "dev_clean" / "wav.scp").is_file()  # the subsets found were still written


# ---------------------------------------------------------------------------------------
# datadir

def make_dir(d: Path, **files):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name.replace("wav_scp", "wav.scp")).write_text(text, encoding="utf-8")
    return d


def test_datadir_validate_names_file_line_and_problem(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    write_wav(wav, tone(1000))
    good = dict(wav_scp=f"u1 {wav}\nu2 cat {wav} |\n", text="u1 hello\nu2 world\n",
                utt2spk="u1 s1\nu2 s1\n", spk2utt="s1 u1 u2\n")
    d = make_dir(tmp_path / "good", **good)
    assert datadir.validate(d)[0] == []
    assert datadir.main(["validate", str(d)]) == 0
    cases = {
        "text": ("u2 world\nu1 hello\n", "text line 2: key u1 comes after u2 (expected sorted keys"),
        "utt2spk": ("u1 s1\nu1 s1\n", "utt2spk line 2: duplicate key u1 (first at line 1)"),
        "spk2utt": ("s1 u1\n", "spk2utt line 1: the utterances of s1 differ from utt2spk"),
        "wav_scp": (f"u1 {wav}\nu2 {tmp_path}/missing.wav\n", f"wav.scp line 2: audio file {tmp_path}/missing.wav does not exist"),
    }
    for i, (name, (content, expected)) in enumerate(cases.items()):
        bad = make_dir(tmp_path / f"bad{i}", **dict(good, **{name: content}))
        errors = datadir.validate(bad)[0]
        assert any(expected in e for e in errors), errors
    bad = make_dir(tmp_path / "empty_text", **dict(good, text="u1 hello\nu2\n"))
    assert any("text line 2: u2 has no value" in e for e in datadir.validate(bad)[0])
    bad = make_dir(tmp_path / "missing", **dict(good, text="u1 hello\n"))
    assert any("1 utterance(s) of utt2spk missing (u2)" in e for e in datadir.validate(bad)[0])
    bad = make_dir(tmp_path / "nospk", wav_scp=good["wav_scp"], text=good["text"], utt2spk=good["utt2spk"])
    assert any("spk2utt is missing" in e for e in datadir.validate(bad)[0])
    assert datadir.main(["validate", str(d), str(bad)]) == 1
    assert "1 of 2 data directory invalid" in capsys.readouterr().err
    # feats are checked when present, unless --no-feats
    feats = make_dir(tmp_path / "feats", **dict(good, **{"feats.scp": "u1 x.ark:5\n"}))
    assert any("feature file x.ark does not exist" in e for e in datadir.validate(feats)[0])
    assert datadir.validate(feats, feats=False)[0] == []


def test_datadir_fix_and_combine(tmp_path, capsys):
    d = make_dir(tmp_path / "d", wav_scp="u3 c.wav\nu1 a.wav\nu2 b.wav\nu4 d.wav\n",
                 text="u2 two\nu1 one\nu3\nu1 again\n", utt2spk="u1 s1\nu2 s1\nu3 s2\nu4 s2\n",
                 spk2utt="s9 u9\n")
    assert datadir.main(["fix", str(d)]) == 0
    log = capsys.readouterr().out
    assert "kept 2 of 4 utterances" in log and "missing from text" in log and "empty transcript" in log
    assert lines(d / "wav.scp") == ["u1 a.wav", "u2 b.wav"]
    assert lines(d / "text") == ["u1 one", "u2 two"]
    assert lines(d / "spk2utt") == ["s1 u1 u2"]
    assert (d / ".backup" / "text").read_text().startswith("u2 two")
    assert datadir.validate(d, check_files=False)[0] == []

    a = make_dir(tmp_path / "a", wav_scp="x1 1.wav\n", text="x1 one\n", utt2spk="x1 sa\n", spk2utt="sa x1\n",
                 utt2num_samples="x1 100\n")
    out = tmp_path / "ab"
    assert datadir.main(["combine", str(out), str(a), str(d)]) == 0
    assert "not combined (missing in some inputs): utt2num_samples" in capsys.readouterr().out
    assert lines(out / "utt2spk") == ["u1 s1", "u2 s1", "x1 sa"] and not (out / "utt2num_samples").exists()
    assert datadir.validate(out, check_files=False)[0] == []
    clash = make_dir(tmp_path / "clash", wav_scp="x1 other.wav\n", text="x1 one\n", utt2spk="x1 sa\n",
                     spk2utt="sa x1\n")
    assert datadir.main(["combine", str(tmp_path / "bad"), str(a), str(clash)]) == 1
    assert "key x1 is also in" in capsys.readouterr().err


@pytest.mark.parametrize("name, zero, one, malformed", [("utt2num_samples", "0", "1", "x"),
                                                        ("utt2num_frames", "0", "1", "1.5"),
                                                        ("feats_shape", "0,80", "1,80", "5,0"),
                                                        ("utt2dur", "0.0", "0.01", "x")])
def test_datadir_rejects_and_fix_drops_zero_length_utterances(tmp_path, name, zero, one,
                                                              malformed):
    """A zero-length utterance is an error for validate and dropped by fix; length 1 (the
    smallest valid one) is kept."""
    base = dict(wav_scp="u1 a.wav\nu2 b.wav\nu3 c.wav\n", text="u1 a\nu2 b\nu3 c\n",
                utt2spk="u1 s\nu2 s\nu3 s\n", spk2utt="s u1 u2 u3\n")
    d = make_dir(tmp_path / "d", **base, **{name: f"u1 {one}\nu2 {zero}\nu3 {one}\n"})
    errors = datadir.validate(d, check_files=False)[0]
    assert errors == [f"{d / name} line 2: u2 has length {zero!r}; "
                      "zero-length utterances must be removed ('datadir fix' does)"]
    r = datadir.fix(d, backup=False)
    assert r["kept"] == 2 and r["dropped"] == {f"zero length in {name}": 1}
    assert list(kvfile.read_dict(d / "text")) == ["u1", "u3"]
    assert kvfile.read_dict(d / name) == {"u1": one, "u3": one}
    assert datadir.validate(d, check_files=False)[0] == []
    # malformed (not zero) values are still reported as malformed
    bad = make_dir(tmp_path / "bad", **base, **{name: f"u1 {one}\nu2 {malformed}\nu3 -1\n"})
    errors = datadir.validate(bad, check_files=False)[0]
    assert len(errors) == 2 and all("expected" in e for e in errors), errors


def test_fbank_boundary_one_frame_is_kept_one_sample_less_is_skipped(tmp_path, capsys):
    """25 ms at 16 kHz is 400 samples: exactly one frame (snip_edges); 399 give none."""
    raw = tmp_path / "raw"
    write_wav(raw / "a.wav", tone(400))
    write_wav(raw / "b.wav", tone(399))
    make_dir(raw, wav_scp=f"a {raw / 'a.wav'}\nb {raw / 'b.wav'}\n", text="a x\nb y\n",
             utt2spk="a s\nb s\n", spk2utt="s a b\n")
    out = tmp_path / "fb"
    assert fbank.main(["--data", str(raw), "--out", str(out)]) == 0
    assert kvfile.read_dict(out / "utt2num_frames") == {"a": "1"}
    assert kvfile.read_dict(out / "feats_shape") == {"a": "1,80"}
    assert "too short for one frame (399 samples < 400)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# format_audio

def test_format_audio_resamples_skips_and_reports(aishell, tmp_path, capsys):
    data = tmp_path / "data"
    prep_aishell.prepare(aishell, data)
    train = data / "train"
    # add a pipe entry, a failing pipe and a missing file to the training set
    wav = kvfile.read_dict(train / "wav.scp")
    files = datadir.load(train)
    for uid, entry in (("BAC009S0002W0009", f"cat {wav['BAC009S0002W0001']} |"),
                       ("BAC009S0002W0010", "false |"), ("BAC009S0002W0011", str(tmp_path / "gone.wav"))):
        files["wav.scp"][uid], files["text"][uid], files["utt2spk"][uid] = entry, "字", "S0002"
    datadir.write(train, files)
    out = tmp_path / "dump" / "raw" / "train"
    capsys.readouterr()
    assert format_audio.main(["--data", str(train), "--out", str(out), "--fs", "16000", "--nj", "2"]) == 0
    log = capsys.readouterr().out
    assert "resampled 1 utterance(s) to 16000 Hz (from 8000 Hz: 1)" in log
    skipped = kvfile.read_dict(out / "skipped.txt")
    assert set(skipped) == {"BAC009S0002W0010", "BAC009S0002W0011"}
    assert skipped["BAC009S0002W0010"].startswith("command failed (exit 1")
    assert skipped["BAC009S0002W0011"].startswith("file not found")
    assert "skipped 2 utterance(s)" in log
    assert_sorted_consistent(out)
    kept = kvfile.read_dict(out / "wav.scp")
    assert sorted(kept) == ["BAC009S0002W0001", "BAC009S0002W0002", "BAC009S0002W0003",
                            "BAC009S0002W0009", "BAC009S0003W0001"]
    n = kvfile.read_dict(out / "utt2num_samples")
    for uid, path in kept.items():
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == int(n[uid])
    assert int(n["BAC009S0003W0001"]) == 16000  # 8000 samples at 8 kHz = 1 s
    # 16-bit input at the target rate is copied sample for sample (file and pipe alike)
    src, _ = soundfile.read(wav["BAC009S0002W0001"], dtype="int16")
    for uid in ("BAC009S0002W0001", "BAC009S0002W0009"):
        np.testing.assert_array_equal(soundfile.read(kept[uid], dtype="int16")[0], src)
    assert kvfile.read_dict(out / "text")["BAC009S0002W0001"] == "今天天气很好"
    # re-run over complete output: nothing done
    assert format_audio.main(["--data", str(train), "--out", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    # stage 1 already left out the empty and the garbage wav; put them back: format_audio
    # still skips them with their reasons
    wav_dir = aishell / "data_aishell" / "wav"
    for split, bad, reason in (("dev", "BAC009S0004W0002", "empty"), ("test", "BAC009S0005W0002", "unreadable audio")):
        files = datadir.load(data / split)
        spk = bad[6:11]
        files["wav.scp"][bad], files["text"][bad], files["utt2spk"][bad] = \
            str(wav_dir / split / spk / f"{bad}.wav"), "字", spk
        datadir.write(data / split, files)
        o = tmp_path / "dump" / "raw" / split
        assert format_audio.main(["--data", str(data / split), "--out", str(o)]) == 0
        assert reason in kvfile.read_dict(o / "skipped.txt")[bad]
        assert len(kvfile.read_dict(o / "wav.scp")) == 1
    # nothing survives: non-zero exit with the reason; missing input names its producer
    only_bad = make_dir(tmp_path / "only_bad", wav_scp="x1 /nonexistent.wav\n", text="x1 a\n",
                        utt2spk="x1 s\n", spk2utt="s x1\n")
    capsys.readouterr()
    assert format_audio.main(["--data", str(only_bad), "--out", str(tmp_path / "o2")]) == 1
    captured = capsys.readouterr()
    assert "no utterance of" in captured.err and "file not found: /nonexistent.wav" in captured.out
    assert format_audio.main(["--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "o3")]) == 1
    assert "wav.scp (audio list) does not exist: it is produced by data preparation" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_SOX, reason="sox not installed")
def test_speed_perturb_ids_pipes_and_lengths(librispeech, tmp_path, capsys):
    data = tmp_path / "data"
    prep_librispeech.prepare(librispeech, data)
    sp = tmp_path / "data" / "train_sp"
    assert speed_perturb.main(["--data", str(data / "dev"), "--out", str(sp), "--factors", "0.9", "1.0", "1.1"]) == 0
    assert_sorted_consistent(sp)
    utt2spk = kvfile.read_dict(sp / "utt2spk")
    assert utt2spk["sp0.9-84-121123-0000"] == "sp0.9-84-121123"
    assert utt2spk["84-121123-0000"] == "84-121123" and utt2spk["sp1.1-116-288045-0000"] == "sp1.1-116-288045"
    assert len(utt2spk) == 9
    wav = kvfile.read_dict(sp / "wav.scp")
    assert wav["sp0.9-84-121123-0000"].startswith("sox -D ") and wav["sp0.9-84-121123-0000"].endswith(" -t wav - speed 0.9 |")
    assert kvfile.read_dict(sp / "text")["sp1.1-84-121123-0001"] == "GOOD MORNING"
    assert kvfile.read_dict(sp / "spk2gender")["sp0.9-84-121123"] == "f"
    out = tmp_path / "raw_sp"
    assert format_audio.main(["--data", str(sp), "--out", str(out), "--nj", "2"]) == 0
    n = {k: int(v) for k, v in kvfile.read_dict(out / "utt2num_samples").items()}
    assert len(n) == 9
    base = n["84-121123-0000"]
    assert abs(n["sp0.9-84-121123-0000"] - base / 0.9) <= 2 and abs(n["sp1.1-84-121123-0000"] - base / 1.1) <= 2
    # a pipe entry perturbed again stays a pipe
    assert speed_perturb.perturb_entry("flac -c -d -s a.flac |", 1.1) == \
        "flac -c -d -s a.flac | sox -D -t wav - -t wav - speed 1.1 |"
    assert speed_perturb.main(["--data", str(tmp_path / "none"), "--out", str(sp)]) == 1
    assert "it is produced by data preparation" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# fbank

def test_fbank_frames_values_and_idempotence(tmp_path, capsys):
    import kaldiio
    import torch
    import torchaudio.compliance.kaldi as tk

    raw = tmp_path / "raw"
    lengths = {"u1": 16000, "u2": 4321, "u3": 400, "u4": 399, "u5": 12345}
    wav, txt, u2s = {}, {}, {}
    for i, (u, n) in enumerate(lengths.items()):
        p = raw / "data" / f"{u}.wav"
        write_wav(p, tone(n, freq=200 + 100 * i, seed=i))
        wav[u], txt[u], u2s[u] = str(p), "a b", "s"
    datadir.write(raw, {"wav.scp": wav, "text": txt, "utt2spk": u2s})
    out = tmp_path / "fbank"
    assert fbank.main(["--data", str(raw), "--out", str(out), "--nj", "2"]) == 0
    log = capsys.readouterr().out
    assert "%)" in log  # progress lines
    assert "too short for one frame (399 samples < 400)" in kvfile.read_dict(out / "skipped.txt")["u4"]
    assert_sorted_consistent(out)
    feats = {k: m for k, m in kaldiio.load_scp_sequential(str(out / "feats.scp"))}
    assert sorted(feats) == ["u1", "u2", "u3", "u5"]
    shapes = kvfile.read_dict(out / "feats_shape")
    frames = kvfile.read_dict(out / "utt2num_frames")
    for u, m in feats.items():
        expect = 1 + (lengths[u] - 400) // 160
        assert m.shape == (expect, 80) and m.dtype == np.float32
        assert shapes[u] == f"{expect},80" and frames[u] == str(expect)
    assert (out / "feats_type").read_text() == "fbank\n" and (out / "feats_dim").read_text() == "80\n"
    assert kvfile.read_dict(out / "text") == {u: "a b" for u in feats}
    # the values are Kaldi's fbank of the 16-bit samples, no dither
    x = soundfile.read(wav["u2"], dtype="int16")[0].astype(np.float32)
    ref = tk.fbank(torch.from_numpy(x)[None], num_mel_bins=80, frame_length=25, frame_shift=10,
                   dither=0.0, sample_frequency=16000).numpy()
    np.testing.assert_allclose(feats["u2"], ref, rtol=1e-5, atol=1e-4)
    # re-run over complete output: no-op (arks untouched)
    arks = {p: p.stat().st_mtime_ns for p in (out / "data").glob("*.ark")}
    assert fbank.main(["--data", str(raw), "--out", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "data").glob("*.ark")} == arks

    # inputs missing: each tool says which stage makes them
    assert fbank.main(["--data", str(tmp_path / "x"), "--out", str(tmp_path / "y")]) == 1
    assert "it is produced by espnet_iml.recipe.format_audio (asr.sh stage 3)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# score

def write_text(path: Path, d):
    path.write_text("".join(f"{k} {v}\n" for k, v in d.items()), encoding="utf-8")
    return path


@pytest.mark.skipif(not HAVE_SCLITE, reason="sclite not installed (apt-get install sctk)")
def test_score_known_counts_with_sclite(tmp_path, capsys):
    ref = write_text(tmp_path / "ref", {"a1": "the cat sat on the mat", "a2": "hello world",
                                        "a3": "one two three", "a4": "Good Day"})
    hyp = write_text(tmp_path / "hyp", {"a1": "the cat sat in the big mat",   # S1 I1
                                        "a2": "hello",                        # D1
                                        "a4": "good day", "zz": "extra"})     # case-insensitive; a3 missing
    out = tmp_path / "wer"
    assert score.main(["--ref", str(ref), "--hyp", str(hyp), "--unit", "word", "--out", str(out)]) == 0
    s = json.loads((out / "score.json").read_text())
    # by hand: 13 reference words; a1 S1 I1, a2 D1, a3 D3 (no hypothesis), a4 correct
    assert (s["n_snt"], s["n_ref"], s["n_corr"], s["n_sub"], s["n_del"], s["n_ins"], s["n_s_err"]) == \
        (4, 13, 8, 1, 4, 1, 3)
    assert s["err"] == round(100 * 6 / 13, 2) and s["s_err"] == 75.0 and s["corr"] == round(800 / 13, 2)
    assert (s["n_missing_hyp"], s["n_extra_hyp"]) == (1, 1)
    result = (out / "result.txt").read_text()
    assert "1 reference(s) without hypothesis, counted as deletions: a3" in result
    assert "Sum/Avg" in result  # sclite's own report follows
    assert lines(out / "ref.trn")[0] == "the cat sat on the mat (a1-a1)"
    assert lines(out / "hyp.trn")[2] == " (a3-a3)"

    # CER: spaces removed, each character a token; utt2spk next to ref names the speakers
    cref = write_text(tmp_path / "cref", {"BAC1": "今天 天气 很好", "BAC2": "我们去公园"})
    (tmp_path / "utt2spk").write_text("BAC1 S1\nBAC2 S1\n")
    chyp = write_text(tmp_path / "chyp", {"BAC1": "今天天汽很好啊", "BAC2": "我去公园"})  # S1 I1 / D1
    cout = tmp_path / "cer"
    assert score.main(["--ref", str(cref), "--hyp", str(chyp), "--unit", "char", "--out", str(cout)]) == 0
    c = json.loads((cout / "score.json").read_text())
    assert (c["n_ref"], c["n_sub"], c["n_del"], c["n_ins"], c["n_corr"]) == (11, 1, 1, 1, 9)
    assert lines(cout / "ref.trn")[0] == "今 天 天 气 很 好 (S1-BAC1)"
    assert "CER" in capsys.readouterr().out

    # sclite's weights (sub 4, ins 3, del 3) prefer deletion + insertion over 3 substitutions;
    # tokens that are trn markup are escaped, so they count as plain words
    r2 = write_text(tmp_path / "r2", {"u1": "a b c d", "u2": "( x/y {z} @"})
    h2 = write_text(tmp_path / "h2", {"u1": "a c d e", "u2": "( x/y {z} @"})
    s2 = score.score(r2, h2, "word", tmp_path / "w2")
    assert (s2["n_ref"], s2["n_corr"], s2["n_sub"], s2["n_del"], s2["n_ins"]) == (8, 7, 0, 1, 1)


def test_score_bad_inputs(tmp_path, capsys):
    ref = write_text(tmp_path / "ref", {"u1": "a b"})
    empty = tmp_path / "hyp"
    empty.write_text("")
    args = ["--ref", str(ref), "--unit", "word", "--out", str(tmp_path / "o")]
    assert score.main(args + ["--hyp", str(empty)]) == 1
    assert "is empty: decoding produced no hypotheses" in capsys.readouterr().err
    assert score.main(args + ["--hyp", str(tmp_path / "nohyp")]) == 1
    assert "it is produced by decoding (asr.sh stage 8)" in capsys.readouterr().err
    if HAVE_SCLITE:
        other = write_text(tmp_path / "other", {"x9": "a b"})
        assert score.main(args + ["--hyp", str(other)]) == 1
        assert "no hypothesis of" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# results

def _scored_exp(exp: Path, params: str, err: float, decodes=("decode_asr_model_valid.acc.ave",)):
    """An experiment as stages 7-9 leave it: train.log, config.yaml and CER scores."""
    for decode in decodes:
        for test_set, n in (("test", 8), ("dev", 5)):
            d = exp / decode / test_set / "score_cer"
            d.mkdir(parents=True)
            (d / "score.json").write_text(json.dumps(
                {"n_snt": n, "n_ref": 10 * n, "corr": 90.0, "sub": 8.0, "del": 2.0,
                 "ins": err - 10.0, "err": err, "s_err": 50.0, "metric": "cer"}))
    (exp / "train.log").write_text(f"Model summary:\n    Total Number of model parameters: {params}\n")
    (exp / "config.yaml").write_text(f"config: conf/{exp.name}.yaml\nother: 1\n")


def test_results_table(tmp_path, capsys):
    exp = tmp_path / "exp"
    names = ("asr_train_asr_conformer_small_fbank_char_sp", "asr_train_asr_iml_small_fbank_char_sp")
    for name, params, err in zip(names, ("1.23 M", "0.98 M"), (10.0, 12.5)):
        _scored_exp(exp / name, params, err)
    (exp / "asr_stats_fbank_char").mkdir()
    (exp / "asr_empty").mkdir()
    md = tmp_path / "RESULTS.md"
    assert results.main(["--exp_dirs", *map(str, sorted(exp.iterdir())), "--out", str(md), "--title", "T"]) == 0
    text = md.read_text()
    assert text.startswith("# T\n")
    # one row per test set and metric, one column per model, each model named once
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table == [
        "| test set | metric | #Snt | #Wrd | conformer_small | iml_small |",
        "|---|---|---:|---:|---:|---:|",
        "| dev | CER | 5 | 50 | 10.0 (8.0/2.0/0.0) | 12.5 (8.0/2.0/2.5) |",
        "| test | CER | 8 | 80 | 10.0 (8.0/2.0/0.0) | 12.5 (8.0/2.0/2.5) |",
    ]
    assert text.count(names[0]) == 2 and text.count(names[1]) == 2  # legend: exp dir and config
    assert f"- **iml_small**: {exp / names[1]}, 0.98 M parameters, training config conf/{names[1]}.yaml" in text
    assert "espnet: " in text and "torch: " in text and "- date: " in text
    assert "asr_empty: no score.json" in capsys.readouterr().out
    assert results.main(["--exp_dirs", str(exp / "asr_empty"), "--out", str(md)]) == 1
    assert "run espnet_iml.recipe.score (asr.sh stage 9) first" in capsys.readouterr().err


def test_results_table_names_experiments_that_share_a_short_name_in_full(tmp_path):
    # The same config trained with two token inventories shortens to one label
    # (iml_small); the columns and the legend must then tell the experiments apart.
    exp = tmp_path / "exp"
    bpe60, bpe800 = "asr_train_asr_iml_small_fbank_bpe_unigram60_sp", "asr_train_asr_iml_small_fbank_bpe_bpe800_sp"
    _scored_exp(exp / bpe60, "2.40 M", 10.0, decodes=("decode_a", "decode_b"))
    _scored_exp(exp / bpe800, "2.73 M", 12.5)
    other = "asr_train_asr_conformer_small_fbank_bpe_unigram60_sp"  # its short name is its own
    _scored_exp(exp / other, "2.56 M", 20.0)
    md = tmp_path / "RESULTS.md"
    assert results.main(["--exp_dirs", str(exp / bpe60), str(exp / bpe800), str(exp / other),
                         "--out", str(md)]) == 0
    text = md.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| test set"))
    labels = [f"{bpe60} [decode_a]", f"{bpe60} [decode_b]", bpe800, "conformer_small"]
    assert header == "| test set | metric | #Snt | #Wrd | " + " | ".join(labels) + " |"
    for label in labels:  # each column has its legend entry, under the same name
        assert text.count(f"- **{label}**: ") == 1
    assert f"- **{bpe800}**: {exp / bpe800}, 2.73 M parameters" in text


# ---------------------------------------------------------------------------------------
# end to end on the project's synthetic corpora (espnet_iml.bin.make_corpus)

@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The project's tiny synthetic AiShell-1 and LibriSpeech, in their released layouts."""
    corpus = pytest.importorskip("espnet_iml.corpus")
    dl = tmp_path_factory.mktemp("generated") / "dl"
    try:
        corpus.generate("aishell", dl, size="tiny", nj=2, verbose=False)
        corpus.generate("librispeech", dl, size="tiny", nj=2, verbose=False)
    except Exception as exc:  # noqa: BLE001 - e.g. espeak-ng missing on this machine
        pytest.skip(f"corpus generator unavailable: {exc}")
    return dl


def test_generated_corpora_through_every_data_stage(generated, tmp_path, capsys):
    dl = generated
    data = tmp_path / "data"
    assert prep_aishell.main(["--corpus", str(dl), "--out", str(data / "a")]) == 0
    assert prep_librispeech.main(["--corpus", str(dl), "--out", str(data / "l")]) == 0
    assert datadir.main(["validate", *(str(p) for p in sorted((data / "a").iterdir()) if p.name != "local"),
                         *(str(p) for p in sorted((data / "l").iterdir()) if p.name != "local")]) == 0
    n_train = len(kvfile.read_dict(data / "a" / "train" / "text"))
    assert n_train == 48 and len(kvfile.read_dict(data / "l" / "train_960" / "text")) == 48
    assert not (data / "a" / "local" / "aishell_skipped.txt").exists()
    raw, fb = tmp_path / "dump" / "raw" / "train", tmp_path / "dump" / "fbank" / "train"
    assert format_audio.main(["--data", str(data / "a" / "train"), "--out", str(raw), "--nj", "2"]) == 0
    assert fbank.main(["--data", str(raw), "--out", str(fb), "--nj", "2"]) == 0
    n = kvfile.read_dict(raw / "utt2num_samples")
    shapes = kvfile.read_dict(fb / "feats_shape")
    assert len(shapes) == n_train
    assert all(shapes[u] == f"{1 + (int(n[u]) - 400) // 160},80" for u in n)
    # decoding stand-in: the references themselves score 0 % CER
    out = tmp_path / "score"
    if HAVE_SCLITE:
        assert score.main(["--ref", str(fb / "text"), "--hyp", str(fb / "text"), "--unit", "char",
                           "--out", str(out)]) == 0
        assert json.loads((out / "score.json").read_text())["err"] == 0.0


def test_transcript_normalization_policy():
    t = transcripts
    assert t.librispeech("Jumps over, the lazy dog!") == ("JUMPS OVER THE LAZY DOG", [t.UPPER, t.PUNCT])
    assert t.librispeech("HIS FATHERS' HOUSE DON'T") == ("HIS FATHERS' HOUSE DON'T", [])
    assert t.librispeech("DON\u2019T  WELL-KNOWN") == ("DON'T WELL KNOWN", [t.PUNCT])
    assert t.librispeech("ＡＢＣ ok") == ("ABC OK", [t.NFKC, t.UPPER])
    assert t.librispeech("?!") == ("", [t.PUNCT])
    assert t.aishell("今天\u3000天气 ＯＫ１") == ("今天天气OK1", [t.NFKC])
    assert t.aishell("今天 天气") == ("今天天气", [])


def test_stage1_names_and_counts_every_planted_fault(generated, tmp_path, capsys):
    """The faults of real corpora planted in the generated ones: each ends as a counted,
    named reason at stage 1, and every other utterance is kept with its transcript."""
    dl = tmp_path / "dl"
    shutil.copytree(generated, dl)
    # LibriSpeech: lower case with punctuation, a line that is not UTF-8, a zero-byte flac,
    # a flac that is not audio, and curly apostrophes with full-width letters.
    chapter = sorted((dl / "LibriSpeech" / "train-clean-100").glob("*/*"))[0]
    trans = next(chapter.glob("*.trans.txt"))
    original = dict(line.split(" ", 1) for line in trans.read_text().splitlines())
    u = sorted(original)
    assert len(u) >= 4
    words = original[u[0]].split()
    lines_ = [f"{u[0]} {words[0].lower().capitalize()}, " + " ".join(w.lower() for w in words[1:]) + "!"]
    lines_.append(f"{u[1]} ".encode() + b"\xff\xfe" + original[u[1]].encode())
    lines_ += [f"{k} {original[k]}" for k in u[2:]]
    trans.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines_) + b"\n")
    (chapter / f"{u[2]}.flac").write_bytes(b"")
    (chapter / f"{u[3]}.flac").write_bytes(b"fLaC but not really")
    out = tmp_path / "data"
    assert prep_librispeech.main(["--corpus", str(dl), "--out", str(out / "l")]) == 0
    log = capsys.readouterr().out
    subset = "train-clean-100"
    assert kvfile.read_dict(out / "l" / "local" / "librispeech_skipped.txt") == {
        u[1]: f"transcript line not valid UTF-8 ({subset})",
        u[2]: f"empty audio file (0 bytes) ({subset})",
        u[3]: f"undecodable audio (not a format soundfile reads) ({subset})"}
    assert lines(out / "l" / "local" / "librispeech_changed.txt") == [
        f"{u[0]} lower case made upper case ({subset})", f"{u[0]} punctuation removed ({subset})"]
    assert f"1 x transcript line not valid UTF-8 ({subset}): {u[1]}" in log
    assert f"1 x punctuation removed ({subset}): {u[0]}" in log
    # every good utterance kept, with the released transcript (the changed one restored)
    texts = {}
    for d in (out / "l").iterdir():
        if d.name.replace("_", "-") in prep_librispeech.SUBSETS:
            texts.update(kvfile.read_dict(d / "text"))
    every = {}
    for t in (dl / "LibriSpeech").glob("*/*/*/*.trans.txt"):
        if t != trans:
            every.update(line.split(" ", 1) for line in t.read_text().splitlines())
    every.update({u[0]: original[u[0]], **{k: original[k] for k in u[4:]}})
    assert texts == every

    # AiShell-1: full-width letters and blanks, a line that is not UTF-8, a zero-byte wav and a
    # wav that is not audio (the archives unpacked first, as some mirrors ship them).
    assert prep_aishell.main(["--corpus", str(dl), "--out", str(out / "a0")]) == 0
    before = kvfile.read_dict(out / "a0" / "train" / "text")
    wavs = kvfile.read_dict(out / "a0" / "train" / "wav.scp")
    a = sorted(before)
    tr = dl / prep_aishell.TRANSCRIPT
    raw = tr.read_bytes().splitlines()
    fixed = []
    for line in raw:
        key = line.split(b" ", 1)[0].decode()
        if key == a[0]:  # full-width space between the words, full-width "OK" at the end
            line = key.encode() + b" " + "\u3000".join(line.decode().split()[1:]).encode() + "ＯＫ".encode()
        elif key == a[1]:
            line = line + b" \xff"
        fixed.append(line)
    tr.write_bytes(b"\n".join(fixed) + b"\n")
    Path(wavs[a[2]]).write_bytes(b"")
    Path(wavs[a[3]]).write_bytes(b"RIFF junk")
    capsys.readouterr()
    assert prep_aishell.main(["--corpus", str(dl), "--out", str(out / "a")]) == 0
    log = capsys.readouterr().out
    assert kvfile.read_dict(out / "a" / "local" / "aishell_skipped.txt") == {
        a[1]: "transcript line not valid UTF-8",
        a[2]: "empty audio file (0 bytes) (train)",
        a[3]: "undecodable audio (not a format soundfile reads) (train)"}
    assert lines(out / "a" / "local" / "aishell_changed.txt") == [
        f"{a[0]} full-width or compatibility characters normalized (NFKC)"]
    assert "made 1 transcript change(s)" in log and "skipped 3 utterance(s)" in log
    after = kvfile.read_dict(out / "a" / "train" / "text")
    assert after == {**{k: before[k] for k in a[4:]}, a[0]: before[a[0]] + "OK"}


# ---------------------------------------------------------------------------------------
# training progress from ESPnet's log

ESPNET_LOG = [
    "[host] 2026-01-01 10:00:00,000 (abs_task:1) INFO: Total Number of model parameters: 1.2 M",
    "[host] 2026-01-01 10:00:10,000 (trainer:811) INFO: 1epoch:train:1-3batch: iter_time=0.004, "
    "loss_ctc=143.817, loss=80.610, optim0_lr0=1.800e-04, train_time=0.209",
    "[host] 2026-01-01 10:00:20,000 (trainer:394) INFO: 1epoch results: [train] iter_time=0.004, "
    "loss_ctc=143.817, acc=0.012, loss=80.610, time=1.26 seconds, total_count=6, [valid] "
    "loss_ctc=134.366, cer_ctc=0.866, acc=0.017, loss=89.830, time=0.08 seconds, total_count=2",
    "an unrelated line",
    "[host] 2026-01-01 10:00:30,000 (trainer:811) INFO: 2epoch:train:1-3batch: loss=12.5",
]


def test_progress_lines_per_step_and_epoch_with_eta():
    clock = iter([0.0, 10.0, 20.0, 30.0])
    p = progress.Progress(max_epoch=3, now=lambda: next(clock))
    got = [p.line(text) for text in ESPNET_LOG]
    # ETA = elapsed / batches done in this run * batches left; 6 batches per epoch
    # (total_count 6 after epoch 1): at 20 s, 6 done, 12 left -> 40 s; at 30 s, 9 and 9 -> 30 s.
    assert got == [
        ESPNET_LOG[0],
        "epoch 1/3, batch 3: train loss 80.6 (elapsed 0m10s)",
        "epoch 1/3: train loss 80.6, valid loss 89.8, valid acc 0.017 (elapsed 0m20s, ETA 0m40s)",
        None,
        "epoch 2/3, batch 3/6: train loss 12.5 (elapsed 0m30s, ETA 0m30s)",
    ]
    # A resumed run (first epoch seen: 3 of 5, 30 iterations so far): only this run's
    # batches set the rate: 10 done in 20 s, 20 left -> 40 s. CTC-only: cer_ctc, no acc.
    clock = iter([0.0, 20.0])
    p = progress.Progress(max_epoch=5, now=lambda: next(clock))
    assert p.line("3epoch results: [train] loss=5.0, total_count=30, [valid] loss=6.0, "
                  "cer_ctc=0.250") == \
        "epoch 3/5: train loss 5.000, valid loss 6.000, valid cer ctc 0.250 (elapsed 0m20s, ETA 0m40s)"


def test_progress_reads_max_epoch_from_config_and_survives_bad_lines(tmp_path):
    config = tmp_path / "config.yaml"
    p = progress.Progress(config=config, now=lambda: 0.0)
    assert p.line("1epoch:train:1-2batch: loss=3.0") == "epoch 1/?, batch 2: train loss 3.000 (elapsed 0m00s)"
    config.write_text("batch_type: folded\nmax_epoch: 7\nfoo: 1\n")  # written when training starts
    assert p.line("1epoch:train:3-4batch: loss=nan").startswith("epoch 1/7, batch 4: train loss nan")
    assert p.line("1epoch:train:5-6batch: loss=oops").startswith("epoch 1/7, batch 6: train loss ?")
    out = io.StringIO()
    progress.follow(io.StringIO("\n".join(ESPNET_LOG) + "\n"), out, progress.Progress(max_epoch=3))
    assert [line.split(" (")[0] for line in out.getvalue().splitlines()] == [
        ESPNET_LOG[0].split(" (")[0], "epoch 1/3, batch 3: train loss 80.6",
        "epoch 1/3: train loss 80.6, valid loss 89.8, valid acc 0.017",
        "epoch 2/3, batch 3/6: train loss 12.5"]
