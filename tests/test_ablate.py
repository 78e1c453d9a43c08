"""The ablations (espnet_iml.compare.ablations, ablation_table, bin/ablate, local/ablate.sh).

Unit tests: the switches each name gives, the generated configs against the base config,
that ``qkv_conv_kernel: 0`` is plain SSA, and the table of a hand-built experiment tree
against values worked out by hand in the comments. The up-front checks of the shell
commands (no work started). End to end (marked slow, it trains): local/ablate.sh on the
tiny generated corpus, two ablations and two baselines, one seed.
"""

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import torch
import yaml

from espnet_iml.bin import ablate as ablate_cli
from espnet_iml.compare.ablation_table import ablation_table, markdown_table, primary_metric
from espnet_iml.compare.ablations import DEFAULT, FIXED, ablation, derive, merge
from espnet_iml.compare.collect import collect_run
from espnet_iml.compare.report import energy_points, plot_energy

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "conf" / "train_asr_iml_spikeformer_small.yaml"


# ------------------------------------------------------------------------------------------
# The switches


@pytest.mark.parametrize("name, override", [
    ("d1", {"encoder_conf": {"spike_levels": 1}}),
    ("d16", {"encoder_conf": {"spike_levels": 16}}),
    ("no_hdm", {"encoder_conf": {"hdm": False}}),
    ("plain_ssa", {"encoder_conf": {"qkv_conv_kernel": 0}}),
    ("const_thr", {"encoder_conf": {"threshold": "constant"}}),
    ("real_frontend", {"encoder_conf": {"spiking_frontend": False}}),
    ("lif4", {"encoder_conf": {"neuron": "lif", "lif_timesteps": 4}}),
    ("rate0.4w50", {"model": "espnet_iml", "model_conf": {"rate_target": 0.4, "rate_weight": 50.0,
                                                          "rate_mode": "target"}}),
    ("ratecap0.25w2.5", {"model": "espnet_iml",
                         "model_conf": {"rate_target": 0.25, "rate_weight": 2.5,
                                        "rate_mode": "ceiling"}}),
])
def test_names_give_their_switch(name, override):
    assert ablation(name).override == override


@pytest.mark.parametrize("name", ["d0", "d", "lif0", "hdm", "rate0.4", "d1x", "D1"])
def test_unknown_names_list_the_valid_ones(name):
    with pytest.raises(ValueError) as err:
        ablation(name)
    assert f"unknown ablation '{name}'" in str(err.value)
    assert "no_hdm, plain_ssa, const_thr, real_frontend, d<N>, lif<T>" in str(err.value)


def test_switch_text():
    assert ablation("no_hdm").switch() == "encoder_conf.hdm: false"
    assert ablation("lif4").switch() == "encoder_conf.neuron: lif, encoder_conf.lif_timesteps: 4"
    assert ablation("rate0.4w50").switch() == ("model: espnet_iml, model_conf.rate_target: 0.4, "
                                              "model_conf.rate_weight: 50, "
                                              "model_conf.rate_mode: target")


def test_the_default_set_is_the_issues_list():
    # D sweep 1, 2, 8 (4 is the full model), HDM, RepSSA's temporal branch, threshold, front
    # end, neuron.
    assert DEFAULT == ["d1", "d2", "d8", "no_hdm", "plain_ssa", "const_thr", "real_frontend",
                       "lif4"]
    assert set(FIXED) <= set(DEFAULT)


def test_derived_configs_differ_from_the_base_by_their_switch_only():
    base = yaml.safe_load(BASE.read_text())
    for name in DEFAULT + ["rate0.4w50"]:
        ab = ablation(name)
        config, note = derive(base, ab)
        assert note is None, name
        for key in set(base) | set(config):
            if key in ab.override and isinstance(ab.override[key], dict):
                want = {**(base.get(key) or {}), **ab.override[key]}
                assert config[key] == want, (name, key)
            elif key in ab.override:
                assert config[key] == ab.override[key]
            else:
                assert config[key] == base[key], (name, key)
    # The base is not modified, and merge only goes one level deep.
    assert base == yaml.safe_load(BASE.read_text())
    assert merge({"a": {"b": {"c": 1}}}, {"a": {"b": {"d": 2}}}) == {"a": {"b": {"d": 2}}}


def test_a_switch_that_changes_nothing_is_noted():
    base = yaml.safe_load(BASE.read_text())
    assert base["encoder_conf"]["spike_levels"] == 4
    _, note = derive(base, ablation("d4"))
    assert note and "d4 (encoder_conf.spike_levels: 4) is the base config's own setting" in note
    # hdm is left out of the base: on by default (the encoder's signature), so no_hdm changes it
    assert "hdm" not in base["encoder_conf"]
    assert derive(base, ablation("no_hdm"))[1] is None
    with pytest.raises(ValueError, match="encoder is 'conformer'"):
        derive({**base, "encoder": "conformer"}, ablation("d1"))


def test_plain_ssa_is_linear_plus_batchnorm():
    """qkv_conv_kernel: 0 leaves the Q/K/V generator a pointwise Linear + BN of the spikes
    (Spikformer's SSA): no temporal conv, and in eval mode y = (W s) * a + c with (a, c) the
    BatchNorm's affine map."""
    from espnet_iml.encoder import IMLSpikeformerEncoder

    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, output_size=16, attention_heads=2, linear_units=32,
                                num_blocks=2, qkv_conv_kernel=0).eval()
    for block in enc.encoders:
        qkv = block.attn.qkv
        assert qkv.kernel_size == 0 and not hasattr(qkv, "conv")
        assert not any(isinstance(m, torch.nn.Conv1d) for m in block.modules())
        s = torch.randint(0, 5, (2, 7, 16)).float()
        mask = torch.ones(2, 7, 1, dtype=torch.bool)
        with torch.no_grad():
            qkv.bn_id.running_mean.uniform_(-1, 1)
            qkv.bn_id.running_var.uniform_(0.5, 2)
            a, c = qkv.bn_id.eval_affine()
            torch.testing.assert_close(qkv(s, mask), (s @ qkv.pointwise.weight.T) * a + c)


# ------------------------------------------------------------------------------------------
# The table, from a hand-built experiment tree

# WER % per (model, seed): (test_clean, test_other); CER is half the WER everywhere.
WER: Dict[Tuple[str, int], Tuple[float, Optional[float]]] = {
    ("iml_spikeformer", 0): (10.0, 20.0), ("iml_spikeformer", 1): (14.0, 30.0),
    ("conformer", 0): (8.0, 25.0), ("conformer", 1): (12.0, 25.0),
    ("d1", 0): (15.0, 40.0), ("d1", 1): (21.0, 30.0),
    ("lif4", 0): (12.0, None),  # lif4 seed 1 never finished; seed 0 has no test_other score
}
PARAMS = {"iml_spikeformer": "2.50 M", "conformer": "2.60 M", "d1": "2.50 M", "lif4": "2.50 M"}
# encoder ANN/SNN energy ratio, mean spike count (none for the baseline and for LIF)
ENERGY = {("iml_spikeformer", 0): (5.0, 0.5), ("iml_spikeformer", 1): (6.0, 0.7),
          ("d1", 0): (8.0, 0.3), ("d1", 1): (10.0, 0.2)}


def make_exp(base: Path, model: str, seed: int) -> Path:
    exp = base / f"asr_compare_{model}_seed{seed}"
    exp.mkdir(parents=True)
    (exp / "train.log").write_text(f"    Total Number of model parameters: {PARAMS[model]}\n")
    decode = exp / "decode_asr_asr_model_valid.acc.ave"
    clean, other = WER.get((model, seed), (None, None))
    for dset, wer in (("test_clean", clean), ("test_other", other)):
        if wer is None:
            continue
        for metric, err in (("wer", wer), ("cer", wer / 2)):
            d = decode / dset / f"score_{metric}"
            d.mkdir(parents=True)
            (d / "score.json").write_text(json.dumps({"err": err, "metric": metric}))
    if (model, seed) in ENERGY:
        ratio, count = ENERGY[(model, seed)]
        (decode / "energy").mkdir()
        (decode / "energy" / "energy.json").write_text(json.dumps({
            "primary": "spiking_frontend", "energy_ratio_encoder": ratio,
            "settings": {"spiking_frontend": {"totals": {"encoder": {"mean_count_neurons": count}}}},
        }))
    return exp


@pytest.fixture
def tree(tmp_path) -> List[Tuple[str, int, Path]]:
    # given in mixed order: the table orders full model, ablations, baselines
    order = ["conformer", "lif4", "iml_spikeformer", "d1"]
    return [(m, s, make_exp(tmp_path / "exp", m, s)) for m in order for s in (0, 1)]


def table_rows(text: str) -> Dict[str, Dict[str, str]]:
    lines = [line for line in text.split("\n## ")[0].splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(head, cells))
            for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def test_table_means_spreads_and_both_ratios(tree):
    runs = [collect_run(m, s, e) for m, s, e in tree]
    models = ["iml_spikeformer", "d1", "lif4", "conformer"]
    t = ablation_table(runs, models, [ablation("d1"), ablation("lif4")])
    assert t.metric == "WER"
    text = markdown_table(t, "Ablations", tiny=True)
    rows = table_rows(text)
    assert list(rows) == models
    full, d1, lif, conf = (rows[m] for m in models)
    assert not any("CER" in col for col in full)  # the primary metric only
    assert d1["switch"] == "`encoder_conf.spike_levels: 1`" and full["switch"] == "(full model)"
    assert conf["switch"] == "(baseline)"
    assert (full["seeds"], d1["seeds"], lif["seeds"], conf["seeds"]) == ("2", "2", "1", "2")
    # d1 test_clean: 15, 21 -> 18 ± sqrt(9 + 9) = 4.24. Against the full model (10, 14 ->
    # 12): 18 / 12 = 1.50, per seed 15/10 = 1.5 and 21/14 = 1.5. Against the Conformer
    # (8, 12 -> 10): 1.80, per seed 15/8 = 1.875 and 21/12 = 1.75.
    assert d1["test_clean WER %"] == "18.00 ± 4.24"
    assert d1["test_clean ×iml_spikeformer"] == "×1.50 (1.50–1.50)"
    assert d1["test_clean ×conformer"] == "×1.80 (1.75–1.88)"
    # d1 test_other: 40, 30 -> 35 ± 7.07; full 20, 30 -> 25: 1.40, per seed 2.0 and 1.0;
    # Conformer 25, 25: 1.40, per seed 1.6 and 1.2.
    assert d1["test_other WER %"] == "35.00 ± 7.07"
    assert d1["test_other ×iml_spikeformer"] == "×1.40 (1.00–2.00)"
    assert d1["test_other ×conformer"] == "×1.40 (1.20–1.60)"
    # lif4, one seed: 12 alone; 12 / 12 = 1.00 of means, seed 0 against seed 0 12/10 = 1.2;
    # against the Conformer 12 / 10 = 1.20, seed 0 12/8 = 1.5. No test_other score.
    assert lif["test_clean WER %"] == "12.00"
    assert lif["test_clean ×iml_spikeformer"] == "×1.00 (1.20–1.20)"
    assert lif["test_clean ×conformer"] == "×1.20 (1.50–1.50)"
    assert lif["test_other WER %"] == "-" and lif["test_other ×conformer"] == "-"
    # the references
    assert full["test_clean ×iml_spikeformer"] == "(ref.)"
    assert full["test_clean ×conformer"] == "×1.20 (1.17–1.25)"
    assert conf["test_clean ×conformer"] == "(ref.)"
    # Conformer against the full model: 10 / 12 = 0.83, per seed 8/10 = 0.80, 12/14 = 0.857
    assert conf["test_clean ×iml_spikeformer"] == "×0.83 (0.80–0.86)"
    # parameters against the full model, none flagged
    assert d1["params"] == "2.50 M (+0.0 %)" and conf["params"] == "2.60 M (+4.0 %)"
    assert full["params"] == "2.50 M"
    # energy: full 5, 6 -> 5.50 ± 0.71, counts 0.5, 0.7 -> 0.600 ± 0.141; d1 8, 10 -> 9.00 ±
    # 1.41, counts 0.3, 0.2 -> 0.250 ± 0.071; LIF and the Conformer have none.
    assert (full["encoder energy ANN/SNN"], full["mean spike count"]) == ("5.50 ± 0.71", "0.600 ± 0.141")
    assert (d1["encoder energy ANN/SNN"], d1["mean spike count"]) == ("9.00 ± 1.41", "0.250 ± 0.071")
    assert lif["encoder energy ANN/SNN"] == "-" and conf["mean spike count"] == "-"
    assert "only checks the plumbing" in text
    # below: every metric against the Conformer, CER included, and every finished seed
    rest = text.split("## Every metric, against conformer", 1)[1]
    assert "test_clean CER %" in rest and "not finished (left out): lif4 seed 1" in rest
    per_seed = [line for line in rest.split("## Per seed")[1].splitlines() if line.startswith("| ")]
    assert len(per_seed) == 1 + 7


def test_primary_metric():
    assert primary_metric([("test", "CER"), ("dev", "CER")]) == "CER"
    assert primary_metric([("test_clean", "CER"), ("test_clean", "WER")]) == "WER"
    assert primary_metric([]) is None


def test_energy_points_pair_each_rows_mean_error_with_its_mean_energy(tree):
    runs = [collect_run(m, s, e) for m, s, e in tree]
    models = ["iml_spikeformer", "d1", "lif4", "conformer"]
    t = ablation_table(runs, models, [ablation("d1"), ablation("lif4")])
    # iml: energy 5, 6 -> 5.5 ± 0.71, test_clean WER 10, 14 -> 12 ± 2.83; d1: energy 8, 10 ->
    # 9 ± 1.41, WER 15, 21 -> 18 ± 4.24. LIF and the Conformer have no energy: no point.
    points = energy_points(t.vs_reference, ("test_clean", "WER"))
    assert [p[0] for p in points] == ["iml_spikeformer", "d1"]
    assert points[0][1:] == pytest.approx((5.5, math.sqrt(0.5), 12.0, math.sqrt(8.0)))
    assert points[1][1:] == pytest.approx((9.0, math.sqrt(2.0), 18.0, math.sqrt(18.0)))
    only_baselines = ablation_table([r for r in runs if r.model == "conformer"], ["conformer"], [])
    assert plot_energy(only_baselines.vs_reference, ("test_clean", "WER"),
                       Path("/nonexistent/x.png"), "t") is None


def test_cli_report_writes_table_json_plot(tree, tmp_path, capsys):
    args = ["report", "--out_dir", str(tmp_path / "out")]
    for m, s, exp in tree:
        args += ["--run", m, str(s), str(exp)]
    assert ablate_cli.main(args) == 0
    out = tmp_path / "out"
    # the full model first, then the ablations in the order given, then the baselines
    assert list(table_rows((out / "ablate.md").read_text())) == ["iml_spikeformer", "lif4", "d1",
                                                                 "conformer"]
    data = json.loads((out / "ablate.json").read_text())
    d1 = next(r for r in data["rows"] if r["model"] == "d1")
    assert d1["override"] == {"encoder_conf": {"spike_levels": 1}}
    assert d1["ratio_full"]["test_clean WER"]["of_means"] == pytest.approx(1.5)
    assert d1["ratio_reference"]["test_clean WER"]["of_means"] == pytest.approx(1.8)
    assert d1["errors"]["test_clean CER"]["mean"] == pytest.approx(9.0)
    assert data["metric"] == "WER" and data["comparison"]["reference"] == "conformer"
    assert (out / "ablate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "ablate_energy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ablate_energy.png" in capsys.readouterr().out  # the log line names it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ablate_cli.main(["report", "--run", "d1", "0", str(empty),
                            "--out_dir", str(tmp_path / "o2")]) == 1
    assert "no run has scores" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Configs


def test_cli_configs_write_checked_configs(tmp_path):
    out = tmp_path / "conf"
    assert ablate_cli.main(["configs", "--base", str(BASE), "--size", "small", "--out_dir",
                            str(out), *DEFAULT]) == 0
    base = yaml.safe_load(BASE.read_text())
    for name in DEFAULT:
        path = out / f"train_asr_{name}_small.yaml"
        text = path.read_text()
        assert text.startswith(f"# Ablation {name}: ")
        assert f"with the override: {ablation(name).switch()}" in text
        assert yaml.safe_load(text) == derive(base, ablation(name))[0]
    # unchanged on a second run (the file times, which compare.sh's size check reads, too)
    mtime = (out / "train_asr_d1_small.yaml").stat().st_mtime_ns
    assert ablate_cli.main(["configs", "--base", str(BASE), "--size", "small", "--out_dir",
                            str(out), "d1"]) == 0
    assert (out / "train_asr_d1_small.yaml").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("names, message", [
    (["d1", "nosuch"], "unknown ablation 'nosuch'"),
    (["d1", "d1"], "an ablation is named twice"),
    # D = 4: a rate target of 5 is unreachable; the model's own check names the option
    (["rate5w1"], "ablation rate5w1 (model: espnet_iml, model_conf.rate_target: 5"),
])
def test_cli_configs_errors_before_writing(tmp_path, capsys, names, message):
    out = tmp_path / "conf"
    assert ablate_cli.main(["configs", "--base", str(BASE), "--size", "small", "--out_dir",
                            str(out), *names]) == 1
    err = capsys.readouterr().err
    assert message in err
    if names[-1] == "rate5w1":
        assert "rate_target (5.0) is above the largest count" in err
    assert not list(out.glob("*.yaml")) if out.exists() else True


# ------------------------------------------------------------------------------------------
# The shell commands: checks before any work


def sh(cmd: List[str], timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_ablate_sh_checks_names_and_starts_nothing(tmp_path):
    work = tmp_path / "work"
    proc = sh([str(ROOT / "local" / "ablate.sh"), "--size", "tiny", "--ablations", "d1 nosuch",
               "--workdir", str(work)])
    assert proc.returncode == 2
    assert "unknown ablation 'nosuch'" in proc.stderr + proc.stdout
    assert "nothing was trained" in proc.stderr
    assert not list(work.glob("exp/*/ablate/conf/*.yaml"))
    proc = sh([str(ROOT / "local" / "ablate.sh"), "--ablations", "d1",
               "--baselines", "iml_spikeformer d1", "--workdir", str(work)])
    assert proc.returncode == 2 and "'d1' is both an ablation and a baseline" in proc.stderr
    proc = sh([str(ROOT / "local" / "ablate.sh"), "--models", "d1"])
    assert proc.returncode == 2 and "--models is set by" in proc.stderr


def test_compare_sh_finds_models_in_conf_dir(tmp_path):
    conf = tmp_path / "conf"
    assert ablate_cli.main(["configs", "--base", str(BASE), "--size", "small", "--out_dir",
                            str(conf), "no_hdm"]) == 0
    work = tmp_path / "work"
    proc = sh([str(ROOT / "local" / "compare.sh"), "--conf_dir", str(conf), "--models",
               "no_hdm nosuch", "--workdir", str(work)])
    assert proc.returncode == 2 and "unknown model 'nosuch'" in proc.stderr
    assert "no_hdm" in proc.stderr.split("valid models")[1] and not work.exists()
    proc = sh([str(ROOT / "local" / "compare.sh"), "--conf_dir", str(tmp_path / "none"),
               "--models", "no_hdm", "--workdir", str(work)])
    assert proc.returncode == 2 and "--conf_dir" in proc.stderr and not work.exists()
    # known now: the run stops at the next check (no prepared data), with no training
    proc = sh([str(ROOT / "local" / "compare.sh"), "--conf_dir", str(conf), "--models",
               "iml_spikeformer no_hdm", "--stage", "3", "--workdir", str(work)])
    assert proc.returncode == 2 and "the data is not prepared" in proc.stderr


def test_run_sh_asr_config_must_exist(tmp_path):
    proc = sh([str(ROOT / "run.sh"), "--asr_config", str(tmp_path / "none.yaml"),
               "--workdir", str(tmp_path / "work")])
    assert proc.returncode == 2 and "--asr_config" in proc.stderr
    assert not (tmp_path / "work").exists()


# ------------------------------------------------------------------------------------------
# End to end on the tiny corpus: it trains 4 tiny models (slow; the lead runs it).

E2E = ["--size", "tiny", "--recipe", "librispeech", "--seeds", "0",
       "--ablations", "d1 lif2", "--baselines", "iml_spikeformer conformer",
       "--speed_perturb_factors", "", "--test_sets", "test_clean test_other", "--nj", "1",
       "--inference_nj", "1", "--energy_args", "--max_utts 1 --no_plots"]


@pytest.mark.slow
def test_ablate_end_to_end(tmp_path):
    work = tmp_path / "work"
    proc = sh([str(ROOT / "local" / "ablate.sh"), *E2E, "--workdir", str(work)], timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:] + "\n--- stderr ---\n" + proc.stderr[-4000:]
    exp = work / "exp" / "librispeech_tiny"
    text = (exp / "ablate" / "ablate.md").read_text()
    rows = table_rows(text)
    assert list(rows) == ["iml_spikeformer", "d1", "lif2", "conformer"]
    for row in rows.values():
        assert row["seeds"] == "1" and row["test_clean WER %"] != "-"
    assert rows["d1"]["test_clean ×conformer"].startswith("×")
    assert rows["d1"]["test_clean ×iml_spikeformer"].startswith("×")
    assert rows["d1"]["mean spike count"] != "-" and rows["lif2"]["mean spike count"] != "-"
    # LIF: counted by the hooks (no spike-driven form), so no strict ratio in the table
    assert rows["d1"]["encoder energy ANN/SNN"] != "-"
    assert rows["lif2"]["encoder energy ANN/SNN"] == "-"
    # each run trained its own config
    cfg = yaml.safe_load((exp / "asr_compare_lif2_seed0" / "config.yaml").read_text())
    assert cfg["encoder_conf"]["neuron"] == "lif" and cfg["encoder_conf"]["lif_timesteps"] == 2
    cfg = yaml.safe_load((exp / "asr_compare_d1_seed0" / "config.yaml").read_text())
    assert cfg["encoder_conf"]["spike_levels"] == 1
    (lif_energy,) = (exp / "asr_compare_lif2_seed0").glob("decode*/energy/energy.json")
    lif_energy = json.loads(lif_energy.read_text())
    assert lif_energy["energy_ratio_encoder_strict"] is None
    assert lif_energy["energy_ratio_encoder"] > 0
    # the comparison's own report folder is left alone
    assert not (exp / "compare" / "compare.md").exists()
    assert (exp / "ablate" / "sizes.txt").is_file()
