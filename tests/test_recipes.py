"""Both recipes end to end (egs2/aishell/asr1, egs2/librispeech/asr1) on generated tiny corpora.

Each recipe runs from a copy of its directory (symlinks, as ESPnet recipes are laid out) in a
temporary directory, through its own run.sh and the shared stage driver
egs2/TEMPLATE/asr1/asr.sh, with the tiny configs of conf/tuning/. Checked: every stage's
outputs, re-running finished stages, resuming an interrupted training, the error for a stage
run before its inputs exist, and the error for a missing corpus.

Cost is dominated by ESPnet processes (about 10 s each to import): statistics (2 jobs),
training, decoding (2 jobs for all test sets together), per recipe.
"""

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import kaldiio
import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE_FILES = ("run.sh", "db.sh", "path.sh", "conf", "local")
TINY = {
    "aishell": ["--asr_config", "conf/tuning/train_asr_iml_spikeformer_tiny.yaml"],
    "librispeech": ["--asr_config", "conf/tuning/train_asr_iml_spikeformer_tiny.yaml",
                    "--nbpe", "40", "--use_lm", "true",
                    "--lm_config", "conf/tuning/train_lm_tiny.yaml"],
}
# One torch thread for training: on a busy 2-core machine two threads are several times slower.
COMMON = ["--ngpu", "0", "--nj", "2", "--inference_nj", "2", "--train_threads", "1",
          "--inference_config", "conf/tuning/decode_asr_tiny.yaml", "--python", sys.executable]
CORPUS_ENV = {"aishell": "AISHELL", "librispeech": "LIBRISPEECH"}
TEST_SETS = {"aishell": ["dev", "test"],
             "librispeech": ["test_clean", "test_other", "dev_clean", "dev_other"]}
TRAIN_SET = {"aishell": "train", "librispeech": "train_960"}


def recipe_copy(base: Path, recipe: str) -> Path:
    """base/egs2/<recipe>/asr1 made of symlinks to the real recipe, next to TEMPLATE."""
    egs = base / "egs2"
    egs.mkdir(parents=True, exist_ok=True)
    if not (egs / "TEMPLATE").exists():
        (egs / "TEMPLATE").symlink_to(ROOT / "egs2" / "TEMPLATE")
    d = egs / recipe / "asr1"
    d.mkdir(parents=True)
    for name in RECIPE_FILES:
        (d / name).symlink_to(ROOT / "egs2" / recipe / "asr1" / name)
    return d


def run(cwd: Path, args: List[str], env: Dict[str, str], ok: bool = True,
        timeout: int = 600) -> subprocess.CompletedProcess:
    """./run.sh args in cwd; on an unexpected exit status fail with the end of its output."""
    proc = subprocess.run(["./run.sh", *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)
    if ok and proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-5000:]}")
    if not ok and proc.returncode == 0:
        raise AssertionError(f"run.sh {' '.join(args)} should have failed:\n{proc.stdout[-3000:]}")
    return proc


def kv(path: Path) -> Dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Dict[str, Path]:
    base = tmp_path_factory.mktemp("corpora")
    out = {}
    for corpus in ("aishell", "librispeech"):
        out[corpus] = base / corpus
        subprocess.run([sys.executable, "-m", "espnet_iml.bin.make_corpus", "--corpus", corpus,
                        "--out", str(out[corpus]), "--size", "tiny", "--quiet"],
                       check=True, timeout=300)
    return out


@pytest.fixture(scope="module")
def aishell(corpora, tmp_path_factory):
    """The whole AiShell recipe (with 3-way speed perturbation) in one run.sh call."""
    d = recipe_copy(tmp_path_factory.mktemp("aishell"), "aishell")
    env = {"AISHELL": str(corpora["aishell"])}
    proc = run(d, [*COMMON, *TINY["aishell"], "--energy_args", "--max_utts 4 --no_plots"], env)
    return d, env, proc


@pytest.fixture(scope="module")
def librispeech(corpora, tmp_path_factory):
    """The LibriSpeech recipe (BPE) in two calls: stages 1-7 with one epoch, then 7-11 with
    the config's two epochs, so that the second call resumes the first's training."""
    d = recipe_copy(tmp_path_factory.mktemp("librispeech"), "librispeech")
    env = {"LIBRISPEECH": str(corpora["librispeech"])}
    args = [*COMMON, *TINY["librispeech"], "--speed_perturb_factors", ""]
    first = run(d, [*args, "--stop_stage", "7", "--asr_args", "--max_epoch 1"], env)
    second = run(d, [*args, "--stage", "7", "--stop_stage", "10"], env)
    return d, env, first, second


def exp_dir(d: Path) -> Path:
    exps = [p for p in (d / "exp").glob("asr_*") if not p.name.startswith("asr_stats")]
    assert len(exps) == 1, exps
    return exps[0]


def check_recipe(d: Path, recipe: str, stdout: str, token: str, unit: str, train: str) -> None:
    sets = [train, "dev", *TEST_SETS[recipe]]
    sets = list(dict.fromkeys(sets))
    # Stage 1 (and 2): Kaldi-style data directories, consistent keys.
    for s in sets:
        data = d / "data" / s
        wav, text, utt2spk = kv(data / "wav.scp"), kv(data / "text"), kv(data / "utt2spk")
        assert wav and set(wav) == set(text) == set(utt2spk), s
        assert list(wav) == sorted(wav), f"{s}/wav.scp is not sorted"
        spk2utt = kv(data / "spk2utt")
        assert sorted(u for v in spk2utt.values() for u in v.split()) == sorted(utt2spk)
    # Stages 3-4: 16 kHz audio, 80-dim fbank for every set.
    for s in sets:
        feats = d / "dump" / "fbank" / s
        assert (d / "dump" / "raw" / s / "wav.scp").is_file()
        scp = kv(feats / "feats.scp")
        assert set(scp) == set(kv(d / "data" / s / "text")), s
        first = next(iter(scp))
        assert kaldiio.load_mat(str(d / scp[first])).shape[1] == 80  # paths relative to d
        assert (feats / "feats_dim").read_text().strip() == "80"
        assert set(kv(feats / "text")) == set(scp)
    # Stage 5: token list with ESPnet's special symbols.
    if token == "char":
        tokens = (d / "data" / "token_list" / "char" / "tokens.txt").read_text().split("\n")
    else:
        bpe = d / "data" / "token_list" / token
        assert (bpe / "bpe.model").is_file()
        tokens = (bpe / "tokens.txt").read_text().split("\n")
    tokens = [t for t in tokens if t]
    assert tokens[0] == "<blank>" and tokens[1] == "<unk>" and tokens[-1] == "<sos/eos>"
    assert len(tokens) > 10
    # Stage 6: ESPnet statistics.
    stats = next((d / "exp").glob("asr_stats_*"))
    assert (stats / "train" / "feats_stats.npz").is_file()
    n_train = len(kv(d / "dump" / "fbank" / train / "feats.scp"))
    assert len(kv(stats / "train" / "speech_shape")) == n_train
    assert (stats / "train" / f"text_shape.{'char' if token == 'char' else 'bpe'}").is_file()
    # Stage 7: checkpoints and the averaged model.
    exp = exp_dir(d)
    assert "iml_spikeformer" in exp.name
    for f in ("config.yaml", "checkpoint.pth", "valid.acc.ave.pth", "2epoch.pth", "train.log"):
        assert (exp / f).exists(), f
    assert "2epoch results" in (exp / "train.log").read_text()
    # Progress on screen: a line for every epoch (loss, validation accuracy), and decoding
    # counted by utterance.
    assert re.search(r"epoch 2/2: train loss [0-9.]+, valid loss [0-9.]+, valid acc [0-9.]+ \(elapsed", stdout)
    n_test = sum(len(kv(d / "dump" / "fbank" / s / "feats.scp")) for s in TEST_SETS[recipe])
    assert f"decoded {n_test}/{n_test} utterances" in stdout
    # Stages 8-9: hypotheses for every utterance of every test set; scores with numbers.
    decode = next(exp.glob("decode_asr_tiny*_asr_model_valid.acc.ave"))
    for s in TEST_SETS[recipe]:
        hyp = kv(decode / s / "text")
        assert set(hyp) == set(kv(d / "dump" / "fbank" / s / "text")), s
        score = json.loads((decode / s / f"score_{unit}" / "score.json").read_text())
        for key in ("n_snt", "n_ref", "corr", "sub", "del", "ins", "err", "s_err"):
            assert isinstance(score[key], (int, float)), key
        assert score["n_snt"] == len(hyp) and score["n_ref"] > 0
        assert (decode / s / f"score_{unit}" / "result.txt").is_file()
        assert re.search(rf"{s}\s+{unit.upper()}\s+[0-9.]+ %", stdout), s
    # Stage 10: the results table in the recipe directory.
    results = (d / "RESULTS.md").read_text()
    for s in TEST_SETS[recipe]:
        assert s in results
    assert re.search(r"\d+\.\d", results)
    # Banners and timings.
    for n in range(1, 11):
        assert f"Stage {n}:" in stdout, n
    assert "done in" in stdout


def test_aishell_end_to_end(aishell):
    d, _, proc = aishell
    # Stage 2: the speed-perturbed copies of the training set (0.9, 1.0, 1.1).
    n = len(kv(d / "data" / "train" / "wav.scp"))
    assert len(kv(d / "data" / "train_sp" / "wav.scp")) == 3 * n
    check_recipe(d, "aishell", proc.stdout, "char", "cer", "train_sp")
    assert re.search(r"epoch 1/2: train loss .*ETA", proc.stdout)
    # Stage 11: the energy report of the trained model.
    assert "Stage 11:" in proc.stdout
    energy = next(exp_dir(d).glob("decode_*")) / "energy"
    assert re.search(r"energy_ratio_encoder=[0-9.]+", (energy / "report.txt").read_text())


def test_librispeech_end_to_end_with_resume(librispeech):
    d, _, first, second = librispeech
    check_recipe(d, "librispeech", first.stdout + second.stdout, "bpe_unigram40", "wer",
                 "train_960")
    log = (exp_dir(d) / "train.log").read_text()
    assert "1epoch results" in log
    assert re.search(r"epoch 1/1: train loss", first.stdout)  # --max_epoch 1 of the first call
    assert "The training was resumed using" in log
    # The second call changed only max_epoch, which a resumption may change.
    assert "checking that this command trains the same model" in second.stdout
    assert "training resumes from" in second.stdout


def test_resume_with_another_recipe_stops_and_changes_nothing(librispeech):
    """Stage 7 again on the trained experiment, with another seed and CTC weight: it stops
    before any training, names what differs, and leaves the experiment as it was."""
    d, env, _, _ = librispeech
    exp = exp_dir(d)
    files = ("checkpoint.pth", "config.yaml", "run.sh", "valid.acc.ave.pth")
    before = {f: (exp / f).read_bytes() for f in files}
    proc = run(d, [*COMMON, *TINY["librispeech"], "--speed_perturb_factors", "",
                   "--stage", "7", "--stop_stage", "7",
                   "--asr_args", "--seed 3 --model_conf ctc_weight=0.9"], env, ok=False)
    assert re.search(r"^  seed: 0 -> 3$", proc.stderr, re.M), proc.stderr
    assert re.search(r"^  model_conf: \{.*ctc_weight: 0.3.*\} -> \{.*ctc_weight: 0.9.*\}$",
                     proc.stderr, re.M), proc.stderr
    assert "Nothing was changed" in proc.stderr
    assert "training started" not in proc.stdout
    assert {f: (exp / f).read_bytes() for f in files} == before


def test_librispeech_language_model(librispeech, corpora):
    """--use_lm true: stage 1 prepares the corpus's LM text, stage 6
    joins it with the training text, stage 7 trains the LM once, stage 8 fuses it."""
    d, _, first, second = librispeech
    with gzip.open(corpora["librispeech"] / "librispeech-lm-norm.txt.gz", "rt") as f:
        corpus_lines = f.read().splitlines()
    other = (d / "data" / "local" / "other_text" / "text").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in other] == corpus_lines
    assert len({line.split(" ", 1)[0] for line in other}) == len(other)
    joined = (d / "exp" / "lm_stats_bpe_unigram40" / "lm_train.txt").read_text().splitlines()
    train = (d / "data" / "train_960" / "text").read_text().splitlines()
    assert joined == train + other
    lm = d / "exp" / "lm_train_lm_tiny_bpe_unigram40"
    assert (lm / "valid.loss.ave.pth").is_file() and (lm / "lm.done").is_file()
    assert "training the LM" in first.stdout
    assert "already trained with this config and text: skipped" in second.stdout
    decode = exp_dir(d) / "decode_asr_tiny_lm_lm_train_lm_tiny_bpe_unigram40_valid.loss.ave_asr_model_valid.acc.ave"
    for n in (1, 2):  # the beam search was built with the LM as a scorer
        assert "(lm): SequentialRNNLM" in (decode / "logdir" / f"asr_inference.{n}.log").read_text()


def test_rerun_finished_stages(aishell):
    """Data and scoring stages replace their outputs with identical ones when run again."""
    d, env, _ = aishell
    tokens = (d / "data" / "token_list" / "char" / "tokens.txt").read_text()
    feats = (d / "dump" / "fbank" / "dev" / "feats.scp").read_text()
    decode = next(exp_dir(d).glob("decode_*"))
    score = (decode / "test" / "score_cer" / "score.json").read_text()
    def table():  # the rows of RESULTS.md (the rest has a date)
        return [row for row in (d / "RESULTS.md").read_text().splitlines() if row.startswith("|")]

    results = table()
    run(d, [*COMMON, *TINY["aishell"], "--stage", "4", "--stop_stage", "5"], env)
    run(d, [*COMMON, *TINY["aishell"], "--stage", "9", "--stop_stage", "10"], env)
    assert (d / "data" / "token_list" / "char" / "tokens.txt").read_text() == tokens
    assert len((d / "dump" / "fbank" / "dev" / "feats.scp").read_text()) == len(feats)
    assert (decode / "test" / "score_cer" / "score.json").read_text() == score
    assert table() == results


def test_rerun_decoding_skips_finished_work(aishell):
    """Stage 8 again: finished sets are skipped; after an interrupted run only the jobs that
    did not finish run again; a set without its output is decoded alone."""
    d, env, _ = aishell
    args = [*COMMON, *TINY["aishell"], "--stage", "8", "--stop_stage", "8"]
    decode = next(exp_dir(d).glob("decode_*"))
    logdir = decode / "logdir"
    sets = TEST_SETS["aishell"]
    texts = {s: (decode / s / "text").read_text() for s in sets}

    def mtime(path: Path) -> int:
        return path.stat().st_mtime_ns

    before = {s: mtime(decode / s / "text") for s in sets}
    proc = run(d, args, env)
    assert "every test set is already decoded" in proc.stdout
    assert all(f"{s}: already decoded" in proc.stdout for s in sets)
    assert {s: mtime(decode / s / "text") for s in sets} == before

    # The state a kill leaves behind: job 1 finished, job 2 did not, no per-set output yet.
    (logdir / "output.2" / "decode.done").unlink()
    for s in sets:
        (decode / s / "decode.done").unlink()
    job_logs = [mtime(logdir / f"asr_inference.{n}.log") for n in (1, 2)]
    proc = run(d, args, env)
    assert "(1 finished by an earlier run)" in proc.stdout
    assert mtime(logdir / "asr_inference.1.log") == job_logs[0]
    assert mtime(logdir / "asr_inference.2.log") != job_logs[1]
    assert {s: (decode / s / "text").read_text() for s in sets} == texts

    # One set without its completion mark: only that set is decoded (one job, to save time:
    # the job count is not part of what a set's output depends on).
    (decode / "test" / "decode.done").unlink()
    dev = mtime(decode / "dev" / "text")
    proc = run(d, [*args, "--inference_nj", "1"], env)
    assert "dev: already decoded" in proc.stdout and "utterances of test," in proc.stdout
    assert mtime(decode / "dev" / "text") == dev
    assert (decode / "test" / "text").read_text() == texts["test"]
    run(d, [*COMMON, *TINY["aishell"], "--stage", "9", "--stop_stage", "9"], env)


@pytest.mark.parametrize("recipe", ["aishell", "librispeech"])
def test_stage_before_its_inputs_names_the_missing_stage(recipe, tmp_path, corpora):
    d = recipe_copy(tmp_path, recipe)
    env = {CORPUS_ENV[recipe]: str(corpora[recipe])}
    for stage, producer in (("2", "1"), ("3", "2"), ("5", "1"), ("6", "4"), ("8", "7"),
                            ("9", "8"), ("10", "9")):
        proc = run(d, [*COMMON, *TINY[recipe], "--stage", stage, "--stop_stage", stage], env,
                   ok=False)
        assert f"run stage {producer} first" in proc.stderr, (stage, proc.stderr)
    # The model switch selects the config (and so the experiment it would decode).
    proc = run(d, [*COMMON, "--model", "conformer", "--stage", "8"], env, ok=False)
    assert "asr_train_asr_conformer_fbank" in proc.stderr
    proc = run(d, ["--model", "nosuchmodel"], env, ok=False)
    assert "iml_spikeformer" in proc.stderr and "conformer" in proc.stderr
    proc = run(d, [*COMMON, "--no_such_option", "1"], env, ok=False)
    assert "unknown option --no_such_option" in proc.stderr


@pytest.mark.parametrize("opts,message", [
    (["--use_lm", "maybe"], "--use_lm takes true or false (got 'maybe')"),
    (["--use_lm", "true", "--lm_config", "conf/no_such_lm.yaml"],
     "--lm_config conf/no_such_lm.yaml does not exist"),
    (["--use_lm", "true", "--lm_config", ""], "--use_lm true needs --lm_config"),
])
def test_bad_lm_options_named_before_any_work(opts, message, tmp_path, corpora):
    d = recipe_copy(tmp_path, "librispeech")
    env = {"LIBRISPEECH": str(corpora["librispeech"])}
    proc = run(d, [*COMMON, *TINY["librispeech"], *opts], env, ok=False)
    assert message in proc.stderr, proc.stderr
    assert not (d / "data").exists()


@pytest.mark.parametrize("recipe,layout", [
    ("aishell", "data_aishell/transcript/aishell_transcript_v0.8.txt"),
    ("librispeech", "LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac"),
])
def test_missing_corpus_shows_expected_layout(recipe, layout, tmp_path):
    d = recipe_copy(tmp_path, recipe)
    env = {CORPUS_ENV[recipe]: str(tmp_path / "no_corpus_here")}
    proc = run(d, [*COMMON, *TINY[recipe], "--stop_stage", "1"], env, ok=False)
    assert "Expected layout" in proc.stderr and layout in proc.stderr
    assert "make_corpus" in proc.stderr
    assert not (d / "data" / TRAIN_SET[recipe]).exists()


def test_partial_librispeech_lists_present_and_missing_subsets(tmp_path, corpora):
    """A tree with some subsets: the error names what is there and what is not, and the
    subsets present are usable through --local_data_opts (shell-quoted) and --test_sets."""
    partial = tmp_path / "partial" / "LibriSpeech"
    partial.mkdir(parents=True)
    for subset in ("train-clean-100", "dev-clean", "test-clean"):
        (partial / subset).symlink_to(corpora["librispeech"] / "LibriSpeech" / subset)
    d = recipe_copy(tmp_path, "librispeech")
    env = {"LIBRISPEECH": str(partial.parent)}
    proc = run(d, [*COMMON, *TINY["librispeech"], "--stop_stage", "1"], env, ok=False)
    assert "present: train-clean-100 dev-clean test-clean" in proc.stderr
    assert "missing: train-clean-360 train-other-500 dev-other test-other" in proc.stderr
    assert "--train_sets 'train-clean-100'" in proc.stderr
    run(d, [*COMMON, *TINY["librispeech"], "--stop_stage", "1", "--test_sets", "test_clean",
            "--local_data_opts", "--train_sets 'train-clean-100'"], env)
    assert len(kv(d / "data" / "train_960" / "text")) == len(kv(d / "data" / "train_clean_100" / "text"))


def root_copy(base: Path) -> Path:
    """The root recipe (run.sh and what it uses) as symlinks, so its outputs land in base."""
    base.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "run.sh", base / "run.sh")
    for name in ("egs2", "conf", "local"):
        (base / name).symlink_to(ROOT / name)
    # run.sh sets the machine up when .venv/bin/python is missing: this Python stands in.
    (base / ".venv" / "bin").mkdir(parents=True)
    (base / ".venv" / "bin" / "python").symlink_to(sys.executable)
    return base


def test_root_run_help_errors_and_results_only_when_made(tmp_path, corpora):
    d = root_copy(tmp_path / "root")
    help_text = subprocess.run(["./run.sh", "--help"], cwd=d, capture_output=True, text=True).stdout
    models = sorted(p.name[len("train_asr_"):-len("_small.yaml")] for p in (ROOT / "conf").glob("train_asr_*_small.yaml"))
    assert models and all(m in help_text for m in models)
    for option in ("--recipe", "--size", "--stage", "--stop_stage", "--asr_args", "--local_data_opts",
                   "egs2/TEMPLATE/asr1/asr.sh --help"):
        assert option in help_text, option
    for args, valid in ((["--model", "nosuch"], models), (["--size", "big"], ["small", "tiny"]),
                        (["--recipe", "x"], ["librispeech", "aishell"])):
        proc = subprocess.run(["./run.sh", *args], cwd=d, capture_output=True, text=True)
        assert proc.returncode == 2 and f"unknown {args[0]} '{args[1]}'" in proc.stderr
        assert all(v in proc.stderr for v in valid), proc.stderr
    # An old table is not printed by a run that did not make it; stage 10 prints a new one.
    exp = d / "exp" / "librispeech_tiny"
    exp.mkdir(parents=True)
    (exp / "RESULTS.md").write_text("# old\n\n## Results\n\nOLD TABLE\n")
    common = ["--size", "tiny", "--corpus", str(corpora["librispeech"]), "--python", sys.executable]
    proc = subprocess.run(["./run.sh", *common, "--stop_stage", "1"], cwd=d, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OLD TABLE" not in proc.stdout and "Results (" not in proc.stdout
    # Scores of a finished run, where asr.sh looks for them (it names the experiment).
    asr_exp = re.search(r" exp=(\S+)", proc.stdout).group(1)
    # LibriSpeech-style runs decode with the LM: its experiment is part of the name.
    decode = "decode_asr_tiny_lm_lm_train_lm_tiny_bpe_unigram60_valid.loss.ave_asr_model_valid.acc.ave"
    score_dir = d / asr_exp / decode / "test_clean" / "score_wer"
    score_dir.mkdir(parents=True)
    (score_dir / "score.json").write_text(json.dumps(
        {"n_snt": 2, "n_ref": 10, "err": 50.0, "sub": 30.0, "del": 10.0, "ins": 10.0, "metric": "wer"}))
    proc = subprocess.run(["./run.sh", *common, "--stage", "10", "--stop_stage", "10"], cwd=d,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout.split(f"Results (exp/librispeech_tiny/RESULTS.md):")[1]
    assert "| test_clean | WER | 2 | 10 | 50.0 (30.0/10.0/10.0) |" in printed and "OLD" not in printed
