"""The model comparison (local/compare.sh, espnet_iml.compare, espnet_iml.bin.compare).

Unit tests: the collected numbers and the table of a hand-built experiment tree, against
values worked out by hand in the comments. End to end: local/compare.sh on the tiny
generated LibriSpeech corpus, two models x two seeds, in a temporary --workdir, then the
same command again (nothing retrained), and the up-front checks (no work started).
"""

import hashlib
import json
import math
import os
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from espnet_iml.bin import compare as compare_cli
from espnet_iml.compare.collect import (collect_run, decoding_time, model_parameters,
                                        training_seconds)
from espnet_iml.compare.report import markdown, summarize
from espnet_iml.recipe.common import RecipeError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["iml_spikeformer", "conformer", "transformer"]

# Error rates (percent) per model, seed, test set; transformer seed 1 never finished.
ERRORS = {
    ("iml_spikeformer", 0): {"test_clean": 10.0, "test_other": 20.0},
    ("iml_spikeformer", 1): {"test_clean": 14.0, "test_other": 30.0},
    ("conformer", 0): {"test_clean": 8.0, "test_other": 25.0},
    ("conformer", 1): {"test_clean": 12.0, "test_other": 25.0},
    ("transformer", 0): {"test_clean": 16.0},
}
PARAMS = {"iml_spikeformer": "2.50 M", "conformer": "2.60 M", "transformer": "3.00 M"}
# Per seed: epoch lines of train.log. Seed 0 was interrupted in epoch 2 and resumed, so
# epoch 2 is reported twice and only its last report counts:
#   seed 0: (65.5 + 4.5) + (20 + 2) = 92 s; seed 1: (123 + 3) = 126 s.
EPOCHS = {
    0: ["1epoch results: [train] iter_time=0.004, forward_time=0.08, loss=80.6, train_time=0.209, "
        "time=1 minute and 5.5 seconds, total_count=6, [valid] loss=89.8, time=4.5 seconds, "
        "total_count=2",
        "2epoch results: [train] loss=70.1, train_time=0.2, time=10 seconds, total_count=12, "
        "[valid] loss=80.1, time=1 seconds, total_count=4",
        "2epoch results: [train] loss=70.0, train_time=0.2, time=20 seconds, total_count=12, "
        "[valid] loss=80.0, time=2 seconds, total_count=4"],
    1: ["1epoch results: [train] loss=80.0, train_time=0.3, time=2 minutes and 3 seconds, "
        "total_count=6, [valid] loss=90.0, time=3 seconds"],
}
# Decoding logs. asr_inference.1: utterances of 300 and 200 frames (5 s of audio), decoded
# from 10:00:05.000 to 10:00:06.250 (1.25 s; model loading before is left out);
# asr_inference.2: 500 frames (5 s) from 10:00:01 to 10:00:02 (1 s). RTF = 2.25 / 10.
DECODE_LOGS = {
    "asr_inference.1.log": [
        "2026-01-01 10:00:00,000 (abs_task:2475) INFO: config file: x/config.yaml",
        "2026-01-01 10:00:05,000 (asr_inference:522) INFO: speech length: 300",
        "  BatchBeamSearch(  (a multi-line repr without timestamps)",
        "2026-01-01 10:00:05,500 (beam_search:483) INFO: best hypo: A B",
        "2026-01-01 10:00:06,000 (asr_inference:522) INFO: speech length: 200",
        "2026-01-01 10:00:06,250 (beam_search:483) INFO: best hypo: C",
    ],
    "asr_inference.2.log": [
        "2026-01-01 09:59:50,000 (abs_task:2475) INFO: config file: x/config.yaml",
        "2026-01-01 10:00:01,000 (asr_inference:522) INFO: speech length: 500",
        "2026-01-01 10:00:02,000 (beam_search:483) INFO: best hypo: D",
    ],
}
ENERGY = {0: (5.0, 0.5), 1: (6.0, 0.7)}  # encoder ANN/SNN ratio, mean spike count


def make_run(base: Path, model: str, seed: int) -> Path:
    exp = base / f"asr_compare_{model}_seed{seed}"
    exp.mkdir(parents=True)
    log = [f"    Total Number of model parameters: {PARAMS[model]}"]
    log += [f"[vm] 2026-01-01 10:00:00,000 (trainer:394) INFO: {line}" for line in EPOCHS[seed]]
    (exp / "train.log").write_text("\n".join(log) + "\n")
    decode = exp / "decode_asr_asr_model_valid.acc.ave"
    for dset, err in ERRORS.get((model, seed), {}).items():
        d = decode / dset / "score_wer"
        d.mkdir(parents=True)
        (d / "score.json").write_text(json.dumps({"err": err, "metric": "wer", "n_snt": 3}))
    if (model, seed) in ERRORS:
        (decode / "logdir").mkdir()
        for name, lines in DECODE_LOGS.items():
            (decode / "logdir" / name).write_text("\n".join(lines) + "\n")
    if model == "conformer" and decode.is_dir():
        # The root recipe runs the energy stage for baselines too: no spiking layer, ratio 1.
        (decode / "energy").mkdir()
        (decode / "energy" / "energy.json").write_text(json.dumps({
            "primary": "real_frontend", "energy_ratio_encoder": 1.0,
            "settings": {"real_frontend": {"totals": {"encoder": {"mean_count_neurons": None}}}},
        }))
    if model == "iml_spikeformer":
        ratio, count = ENERGY[seed]
        # Seed 0's file has the strict ratio (the headline) beside a different generous one;
        # seed 1's is from before the strict convention and has only the generous ratio.
        ratios = ({"energy_ratio_encoder_strict": ratio, "energy_ratio_encoder": ratio * 1.3}
                  if seed == 0 else {"energy_ratio_encoder": ratio})
        (decode / "energy").mkdir()
        (decode / "energy" / "energy.json").write_text(json.dumps({
            "primary": "spiking_frontend", **ratios,
            "settings": {"spiking_frontend": {"totals": {"encoder": {"mean_count_neurons": count}}}},
        }))
    return exp


@pytest.fixture
def tree(tmp_path) -> Dict[tuple, Path]:
    return {(m, s): make_run(tmp_path / "exp", m, s) for m in MODELS for s in (0, 1)}


def table_rows(text: str) -> Dict[str, Dict[str, str]]:
    """The first markdown table of ``text`` as {model: {column: cell}}."""
    lines = [line for line in text.split("\n## ")[0].splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(head, cells))
            for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def test_parsers_against_hand_values(tree):
    text = (tree[("iml_spikeformer", 0)] / "train.log").read_text()
    assert model_parameters(text) == pytest.approx(2.5e6)
    assert model_parameters("Total Number of model parameters: 248.40 K") == pytest.approx(248400)
    # train_time= and forward_time= are not training time; epoch 2's first report is replaced.
    assert training_seconds(text) == (pytest.approx(92.0), 2)
    assert training_seconds("no epochs yet") == (None, None)
    logdir = tree[("iml_spikeformer", 0)] / "decode_asr_asr_model_valid.acc.ave" / "logdir"
    assert decoding_time(logdir) == (pytest.approx(2.25), pytest.approx(10.0))


def test_learning_curve_keeps_last_report_of_each_epoch():
    from espnet_iml.compare.curves import learning_curve

    log = "\n".join(f"[vm] 2026 (trainer:394) INFO: {line}" for line in EPOCHS[0])
    log = log.replace("[valid] loss=80.0", "[valid] loss=80.0, acc=0.5, cer_ctc=0.25")
    points = learning_curve(log)
    assert [(p.epoch, p.updates) for p in points] == [(1, 6), (2, 12)]
    assert points[1].valid == {"loss": 80.0, "acc": 0.5, "cer_ctc": 0.25, "time": 2.0,
                               "total_count": 4.0}
    assert points[0].valid["loss"] == 89.8


def test_collect_run(tree):
    run = collect_run("iml_spikeformer", 1, tree[("iml_spikeformer", 1)])
    assert run.errors == {("test_clean", "WER"): 14.0, ("test_other", "WER"): 30.0}
    assert run.params == pytest.approx(2.5e6)
    assert run.train_seconds == pytest.approx(126.0) and run.epochs == 1
    assert run.rtf == pytest.approx(0.225)
    assert (run.energy_ratio, run.spike_count) == (6.0, 0.7)
    base = collect_run("conformer", 0, tree[("conformer", 0)])
    assert base.energy_ratio is None and base.spike_count is None
    unfinished = collect_run("transformer", 1, tree[("transformer", 1)])
    assert unfinished.errors == {} and unfinished.rtf is None


def test_collect_run_reports_the_named_decoding(tree):
    exp = tree[("iml_spikeformer", 1)]
    # A later probe decoding of dev only (stage 8-9 with another --inference_tag): the newest.
    probe = exp / "dev_probe" / "dev" / "score_wer"
    probe.mkdir(parents=True)
    (probe / "score.json").write_text(json.dumps({"err": 55.0, "metric": "wer", "n_snt": 3}))
    assert collect_run("iml_spikeformer", 1, exp).errors == {("dev", "WER"): 55.0}
    named = collect_run("iml_spikeformer", 1, exp, decode="decode_asr_asr_model_valid.acc.ave")
    assert named.errors == {("test_clean", "WER"): 14.0, ("test_other", "WER"): 30.0}
    assert named.energy_ratio == 6.0
    with pytest.raises(RecipeError, match="no scored decoding named decode_typo; scored ones: "
                                          "dev_probe decode_asr_asr_model_valid.acc.ave"):
        collect_run("iml_spikeformer", 1, exp, decode="decode_typo")
    # The same through the command line, for every run.
    out = exp.parent / "report"
    assert compare_cli.main(["report", "--run", "iml_spikeformer", "1", str(exp), "--out_dir", str(out),
                         "--decode", "decode_asr_asr_model_valid.acc.ave"]) == 0
    assert "dev_probe" not in (out / "compare.md").read_text()


def test_table_means_spreads_ratios(tree):
    runs = [collect_run(m, s, exp) for (m, s), exp in tree.items()]
    summary = summarize(runs, MODELS, reference="conformer", spiking="iml_spikeformer")
    text = markdown(summary, "Model comparison", tiny=True)
    rows = table_rows(text)
    assert list(rows) == MODELS
    iml, conf, trans = rows["iml_spikeformer"], rows["conformer"], rows["transformer"]
    assert (iml["seeds"], conf["seeds"], trans["seeds"]) == ("2", "2", "1")
    # test_clean: iml 10, 14 -> mean 12, sample std sqrt(((10-12)^2 + (14-12)^2) / 1) = 2.83;
    # conformer 8, 12 -> 10 ± 2.83. Ratio of means 12 / 10 = 1.20; per seed 10/8 = 1.25,
    # 14/12 = 1.17.
    assert iml["test_clean WER %"] == "12.00 ± 2.83 ×1.20 (1.17–1.25)"
    assert conf["test_clean WER %"] == "10.00 ± 2.83 (ref.)"
    # test_other: iml 20, 30 -> 25 ± 7.07; conformer 25, 25 -> 25 ± 0; per seed 0.80, 1.20.
    assert iml["test_other WER %"] == "25.00 ± 7.07 ×1.00 (0.80–1.20)"
    assert conf["test_other WER %"] == "25.00 ± 0.00 (ref.)"
    # One seed: the value alone; its ratio pairs seed 0 with the conformer's seed 0 (16/8).
    assert trans["test_clean WER %"] == "16.00 ×1.60 (2.00–2.00)"
    assert trans["test_other WER %"] == "-"
    # Parameters: 2.60 / 2.50 = +4 % (matched), 3.00 / 2.50 = +20 % (not matched: warned).
    assert iml["params"] == "2.50 M"
    assert conf["params"] == "2.60 M (+4.0 %)"
    assert trans["params"] == "3.00 M (+20.0 %) **not matched**"
    assert "WARNING: transformer has 3.00 M parameters, +20.0 %" in text
    assert "WARNING: conformer" not in text
    # Training minutes 92 s and 126 s -> 1.533, 2.1 -> mean 1.82, std 0.40; RTF 0.225 each.
    assert iml["training min"] == "1.8 ± 0.4"
    assert iml["decoding RTF"] == "0.225 ± 0.000"
    # Energy ratio 5, 6 -> 5.50 ± 0.71; spike count 0.5, 0.7 -> 0.600 ± 0.141; baselines none.
    assert iml["encoder energy ANN/SNN"] == "5.50 ± 0.71"
    assert iml["mean spike count"] == "0.600 ± 0.141"
    assert conf["encoder energy ANN/SNN"] == "-" and conf["mean spike count"] == "-"
    assert "not finished (left out): transformer seed 1" in text
    assert "only checks the plumbing" in text
    assert "WER (words) and CER (characters) can exceed 100" in text
    # The per-seed table has one row per finished run.
    per_seed = [line for line in text.split("## Per seed")[1].splitlines() if line.startswith("| ")]
    assert len(per_seed) == 1 + 5


def test_per_seed_ratio_against_an_error_free_reference_seed(tree):
    # The reference's seed 1 made no error on test_clean (an AiShell-style Conformer did so on
    # dev): iml's seed 1 (14 errors) has no finite ratio and the range must say so instead of
    # silently showing seed 0 alone; a model with no error on that seed either is level (1).
    runs = [collect_run(m, s, exp) for (m, s), exp in tree.items()]
    for r in runs:
        if r.seed == 1 and r.model in ("conformer", "transformer"):
            r.errors[("test_clean", "WER")] = 0.0
    rows = table_rows(markdown(summarize(runs, MODELS, reference="conformer"), "t"))
    # iml: 12 / mean(8, 0) = 3.00; seed 0: 10 / 8 = 1.25; seed 1: 14 / 0 -> ∞.
    assert rows["iml_spikeformer"]["test_clean WER %"] == "12.00 ± 2.83 ×3.00 (1.25–∞)"
    # transformer: 16, 0 -> 8 ± 11.31; 8 / 4 = 2.00; seeds 16 / 8 = 2.00 and 0 / 0 -> 1.
    assert rows["transformer"]["test_clean WER %"] == "8.00 ± 11.31 ×2.00 (1.00–2.00)"


def test_no_ratio_without_reference(tree):
    runs = [collect_run(m, s, tree[(m, s)]) for m in ("iml_spikeformer",) for s in (0, 1)]
    summary = summarize(runs, ["iml_spikeformer"], reference="conformer")
    assert table_rows(markdown(summary, "t"))["iml_spikeformer"]["test_clean WER %"] == "12.00 ± 2.83"
    assert any("reference model conformer" in w for w in summary.warnings)


def test_cli_report_writes_table_json_plot(tree, tmp_path, capsys):
    args = ["report", "--out_dir", str(tmp_path / "out")]
    for (m, s), exp in tree.items():
        args += ["--run", m, str(s), str(exp)]
    assert compare_cli.main(args) == 0
    out = tmp_path / "out"
    assert table_rows((out / "compare.md").read_text())["iml_spikeformer"]["seeds"] == "2"
    data = json.loads((out / "compare.json").read_text())
    iml = next(r for r in data["rows"] if r["model"] == "iml_spikeformer")
    assert iml["errors"]["test_clean WER"]["mean"] == pytest.approx(12.0)
    assert iml["errors"]["test_clean WER"]["std"] == pytest.approx(math.sqrt(8))
    assert iml["ratios"]["test_clean WER"]["of_means"] == pytest.approx(1.2)
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # No run with scores at all: a clear error, exit status 1.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert compare_cli.main(["report", "--run", "conformer", "0", str(empty),
                             "--out_dir", str(tmp_path / "o2")]) == 1
    assert "no run has scores" in capsys.readouterr().err


def test_a_model_has_one_colour_in_the_bars_and_the_curves(tree, monkeypatch):
    """The bars follow the report's row order; the learning curves once sorted the runs by
    name, which gave the Conformer IML-Spikeformer's colour there."""
    from matplotlib.colors import to_rgba
    from espnet_iml.compare import curves as curves_mod
    from espnet_iml.compare import report as report_mod

    figs = []
    monkeypatch.setattr(report_mod, "save_figure", lambda fig, path, title: figs.append(fig) or path)
    runs = [collect_run(m, s, exp) for (m, s), exp in tree.items()]
    report_mod.plot(summarize(runs, MODELS, reference="conformer"), Path("bars.png"), "t")
    point = [curves_mod.Point(1, 250, {"acc": 0.5, "cer_ctc": 0.4})]
    curves_mod.plot_curves({(m, s): point for m in MODELS for s in (0, 1)}, Path("c.png"), "t")
    bars, curves = figs
    bar_colour = {c.get_label(): to_rgba(c.patches[0].get_facecolor())
                  for c in bars.axes[0].containers if hasattr(c, "patches")}
    line_colour = {line.get_label(): to_rgba(line.get_color())
                   for line in curves.axes[0].lines if not line.get_label().startswith("_")}
    assert set(bar_colour) == set(MODELS) == set(line_colour)
    assert bar_colour == line_colour
    assert len(set(bar_colour.values())) == len(MODELS)


# ------------------------------------------------------------------------------------------
# local/compare.sh end to end on the tiny corpus.

# Kept small: no speed perturbation, two test sets, one decoding job, the energy report on
# one utterance.
E2E = ["--size", "tiny", "--recipe", "librispeech", "--seeds", "0 1",
       "--models", "iml_spikeformer conformer", "--speed_perturb_factors", "",
       "--test_sets", "test_clean test_other", "--nj", "1", "--inference_nj", "1",
       "--energy_args", "--max_utts 1 --no_plots"]


def compare_sh(args: List[str], ok: bool = True, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(ROOT / "local" / "compare.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if ok and proc.returncode != 0:
        raise AssertionError(f"compare.sh failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    work = tmp_path_factory.mktemp("compare") / "work"
    first = compare_sh([*E2E, "--workdir", str(work)])
    return work, first


def test_report_uses_exact_sizes_where_train_log_agrees(tree, tmp_path, capsys):
    # train.log rounds to three digits (2.50 M, 2.60 M); the counts of the built models are
    # exact. Conformer: 2,597,000 / 2,504,321 - 1 = +3.70 % (train.log alone: +4.0 %). The
    # transformer's train.log says 3.00 M against 2.60 M for its config: trained with another
    # model, so it keeps its own count (3.00 / 2.504321 - 1 = +19.8 %) and is warned about.
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({"iml_spikeformer": 2504321, "conformer": 2597000,
                                 "transformer": 2600000}))
    args = ["report", "--out_dir", str(tmp_path / "out"), "--sizes", str(sizes)]
    for (m, s), exp in tree.items():
        args += ["--run", m, str(s), str(exp)]
    assert compare_cli.main(args) == 0
    text = (tmp_path / "out" / "compare.md").read_text()
    rows = table_rows(text)
    assert rows["conformer"]["params"] == "2.60 M (+3.7 %)"
    assert rows["transformer"]["params"] == "3.00 M (+19.8 %) **not matched**"
    assert "transformer seed 0: train.log counts 3.00 M parameters, its config 2.600 M" in text
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert {r["model"]: r["params"] for r in data["rows"]}["conformer"] == 2597000
    # A sizes file that is not {model: count}: a clear error before anything is written.
    sizes.write_text("[1, 2]")
    assert compare_cli.main(args[:2] + [str(tmp_path / "o2")] + args[3:]) == 1
    assert "expected {model: parameter count}" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_compare_end_to_end(compared):
    work, proc = compared
    assert "ONLY CHECKS THE PLUMBING" in proc.stdout
    out = work / "exp" / "librispeech_tiny" / "compare"
    text = (out / "compare.md").read_text()
    rows = table_rows(text)
    assert list(rows) == ["iml_spikeformer", "conformer"]
    for row in rows.values():
        assert row["seeds"] == "2"
        for dset in ("test_clean", "test_other"):
            for metric in ("WER", "CER"):
                assert " ± " in row[f"{dset} {metric} %"]
    assert "×" in rows["iml_spikeformer"]["test_clean WER %"]
    # The size difference in the table is stage 2's exact one, not train.log's rounded one.
    stage2 = next(line for line in proc.stdout.splitlines() if "] conformer: " in line)
    assert "(" + stage2.split("(")[1].split(" against")[0] + ")" in rows["conformer"]["params"]
    assert " ± " in rows["iml_spikeformer"]["encoder energy ANN/SNN"]
    per_seed = [line for line in text.split("## Per seed")[1].splitlines() if line.startswith("| ")]
    assert len(per_seed) == 1 + 4
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Each seed reached ESPnet's trainer.
    for seed in (0, 1):
        cfg = work / "exp" / "librispeech_tiny" / f"asr_compare_conformer_seed{seed}" / "config.yaml"
        assert f"\nseed: {seed}\n" in cfg.read_text()
    # Nothing written into the repository.
    assert not (ROOT / "exp" / "librispeech_tiny" / "asr_compare_conformer_seed0").exists()


def test_compare_rerun_skips_finished_runs(compared):
    work, _ = compared
    exp = work / "exp" / "librispeech_tiny"
    logs = sorted(exp.glob("asr_compare_*/train.log"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in logs}
    proc = compare_sh([*E2E, "--workdir", str(work)])
    assert "data already prepared" in proc.stdout
    assert proc.stdout.count("finished earlier, skipped") == 4
    assert "Stage 7:" not in proc.stdout
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in logs} == before
    assert (exp / "compare" / "compare.md").is_file()


def test_compare_refuses_runs_made_with_another_recipe(compared, tmp_path):
    # A changed config or changed training options must not be mixed silently with the
    # finished runs of the old recipe: the comparison stops before training anything.
    work, _ = compared
    exp = work / "exp" / "librispeech_tiny"
    logs = sorted(exp.glob("asr_compare_*/train.log"))
    before = {p: p.stat().st_mtime_ns for p in logs}
    proc = compare_sh([*E2E, "--workdir", str(work), "--asr_args", "--max_epoch 3"], ok=False)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "another config or other options" in proc.stderr
    assert proc.stderr.count("> asr_args: --max_epoch 3") == 4
    assert "Stage 7:" not in proc.stdout
    # The config's content counts, not its name or its comments: a copy with a changed value
    # flags that model's runs only; a copy with only a comment added flags nothing.
    conf = tmp_path / "conf"
    conf.mkdir()
    src = ROOT / "egs2" / "librispeech" / "asr1" / "conf" / "tuning" / "train_asr_conformer_tiny.yaml"
    text = src.read_text()
    assert "\ngrad_clip: 5\n" in text
    (conf / src.name).write_text(text.replace("\ngrad_clip: 5\n", "\ngrad_clip: 4\n"))
    proc = compare_sh([*E2E, "--workdir", str(work), "--conf_dir", str(conf)], ok=False)
    assert proc.returncode == 2
    assert "asr_compare_conformer_seed0" in proc.stderr and "asr_compare_conformer_seed1" in proc.stderr
    assert "asr_compare_iml_spikeformer" not in proc.stderr
    assert proc.stderr.count("config content sha256") == 4   # recorded and now, for 2 runs
    (conf / src.name).write_text("# a comment: not part of the recipe\n" + text)
    # A run recorded before records held the parsed content's checksum is checked by the
    # checksum of the file's text, as it was recorded.
    record = exp / "asr_compare_conformer_seed0" / "compare.recipe"
    lines = record.read_text().splitlines()
    raw = hashlib.sha256((conf / src.name).read_bytes()).hexdigest()
    record.write_text("\n".join(f"config sha256: {raw}" if ln.startswith("config content sha256:")
                                else ln for ln in lines) + "\n")
    proc = compare_sh([*E2E, "--workdir", str(work), "--conf_dir", str(conf), "--stop_stage", "3"])
    assert proc.stdout.count("finished earlier, skipped") == 4
    assert {p: p.stat().st_mtime_ns for p in logs} == before


def test_config_digest_is_the_content_not_the_text(tmp_path):
    from espnet_iml.compare.provenance import config_digest

    a = tmp_path / "a.yaml"
    a.write_text("optim: adam\noptim_conf:\n    lr: 0.002\nmax_epoch: 12\n")
    b = tmp_path / "b.yaml"   # the same content: other order, comments, flow style
    b.write_text("# why 12 epochs\nmax_epoch: 12   # 3,000 updates\noptim_conf: {lr: 0.002}\noptim: adam\n")
    c = tmp_path / "c.yaml"   # one value changed
    c.write_text("optim: adam\noptim_conf:\n    lr: 0.003\nmax_epoch: 12\n")
    assert config_digest(a) == config_digest(b)
    assert config_digest(a) != config_digest(c)
    assert len(config_digest(a)) == 64
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [adam\n")
    with pytest.raises(RecipeError, match="not readable as YAML"):
        compare_cli.digest(compare_cli.get_parser().parse_args(["digest", str(bad)]))


def test_bad_model_lists_valid_ones_and_starts_nothing(tmp_path):
    work = tmp_path / "work"
    proc = compare_sh(["--size", "tiny", "--models", "iml_spikeformer nosuchmodel",
                       "--workdir", str(work)], ok=False)
    assert proc.returncode == 2
    assert "unknown model 'nosuchmodel'" in proc.stderr
    for m in MODELS:
        assert m in proc.stderr
    assert not work.exists()
    proc = compare_sh(["--models", "nosuchmodel", "--workdir", str(work)], ok=False)
    assert "conf/train_asr_*_small.yaml" in proc.stderr and not work.exists()
    # The same command through the root recipe's --compare.
    proc = subprocess.run([str(ROOT / "run.sh"), "--compare", "--models", "nosuchmodel",
                           "--workdir", str(work)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown model 'nosuchmodel'" in proc.stderr
    assert not work.exists()


def test_too_little_disk_space_starts_nothing(tmp_path):
    work = tmp_path / "work"
    proc = compare_sh(["--size", "tiny", "--min_free_mb", str(10 ** 12), "--workdir", str(work)],
                      ok=False)
    assert proc.returncode == 2
    assert "MB free" in proc.stderr and "--min_free_mb" in proc.stderr and "--workdir" in proc.stderr
    assert not work.exists()
