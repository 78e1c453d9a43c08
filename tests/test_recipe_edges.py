"""Recipe-tool edges the mutation run (docs/mutation.md) found untested: the 16-bit clipping
boundary, format_audio's multi-channel and clipping report, combine's duplicate count,
validate's defaults, and a weighted alignment (sclite's) that minimises its cost rather
than the number of errors."""

import numpy as np
import pytest
import soundfile

from espnet_iml.recipe import audio, datadir, format_audio, kvfile, score
from test_recipe_tools import lines, make_dir, tone


def test_audio_to_int16_rounds_and_counts_clipping_at_the_boundary():
    """x * 32768 rounded; +1.0 (32768) does not fit int16 and is clipped, -1.0 (-32768) fits."""
    x = np.array([1.0, -1.0, 0.5, 1.2, -1.3, 3 / 32768, 0.49 / 32768])
    y, clipped = audio.to_int16(x)
    assert y.dtype == np.int16
    assert y.tolist() == [32767, -32768, 16384, 32767, -32768, 3, 0]
    assert clipped == 3


def test_format_audio_reports_multichannel_and_clipped(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    stereo = np.stack([tone(1600), tone(1600, freq=880)], axis=1)
    soundfile.write(str(src / "a.wav"), stereo, 16000, subtype="PCM_16")
    loud = np.full(1600, 0.25)
    loud[100] = 1.0  # exactly full scale: clipped to 32767
    soundfile.write(str(src / "b.wav"), loud, 16000, subtype="FLOAT")
    soundfile.write(str(src / "c.wav"), tone(1600), 16000, subtype="PCM_16")
    data = make_dir(tmp_path / "data", wav_scp="".join(f"{u} {src / u}.wav\n" for u in "abc"),
                    text="a x\nb y\nc z\n", utt2spk="a s\nb s\nc s\n", spk2utt="s a b c\n")
    out = tmp_path / "out"
    assert format_audio.main(["--data", str(data), "--out", str(out), "--fs", "16000"]) == 0
    log = capsys.readouterr().out
    assert "1 multi-channel utterance(s): kept the first channel" in log
    assert "1 utterance(s) had samples clipped to the 16-bit range" in log
    wav = kvfile.read_dict(out / "wav.scp")
    first, _ = soundfile.read(wav["a"], dtype="int16")
    assert first.tolist() == tone(1600).tolist()
    b, _ = soundfile.read(wav["b"], dtype="int16")
    assert b[100] == 32767 and b[0] == 8192


def test_datadir_combine_reports_identical_duplicates(tmp_path, capsys):
    a = make_dir(tmp_path / "a", wav_scp="u1 1.wav\nu2 2.wav\n", text="u1 x\nu2 y\n",
                 utt2spk="u1 s\nu2 s\n", spk2utt="s u1 u2\n")
    b = make_dir(tmp_path / "b", wav_scp="u2 2.wav\nu3 3.wav\n", text="u2 y\nu3 z\n",
                 utt2spk="u2 s\nu3 s\n", spk2utt="s u2 u3\n")
    assert datadir.main(["combine", str(tmp_path / "ab"), str(a), str(b)]) == 0
    assert "1 utterance(s) appeared in several inputs identically; kept once" in capsys.readouterr().out
    assert lines(tmp_path / "ab" / "utt2spk") == ["u1 s", "u2 s", "u3 s"]
    assert datadir.combine(tmp_path / "aa", [a, a])["duplicates"] == 2


def test_datadir_validate_requires_text_unless_told_not_to(tmp_path):
    d = make_dir(tmp_path / "d", wav_scp="u1 1.wav\n", utt2spk="u1 s\n", spk2utt="s u1\n")
    errors = datadir.validate(d, check_files=False)[0]
    assert len(errors) == 1 and f"{d}/text is missing" in errors[0]
    assert datadir.validate(d, text=False, check_files=False)[0] == []


@pytest.mark.skipif(score.find_sclite() is None, reason="sclite not installed (apt-get install sctk)")
def test_score_alignment_minimises_sclite_cost_not_error_count(tmp_path):
    """Weights sub 4, del 3, ins 3, correct 0 (sclite's). ref 'd d c c b' vs hyp 'c b a a a':
    five substitutions cost 20 (5 errors), but deleting 'd d c', matching 'c b' and
    inserting 'a a a' costs 18 (6 errors): sclite reports the latter, and score.json
    carries its counts. (A correct word that cost 1 instead of 0 would tip it to the five
    substitutions: 20 < 18 + 2.)"""
    (tmp_path / "ref").write_text("u1 d d c c b\n")
    (tmp_path / "hyp").write_text("u1 c b a a a\n")
    s = score.score(tmp_path / "ref", tmp_path / "hyp", "word", tmp_path / "out")
    assert (s["n_corr"], s["n_sub"], s["n_del"], s["n_ins"]) == (2, 0, 3, 3)