"""local/gpu_benchmark.sh: its CPU dry run (tiny sizes) end to end, the clear skip without
a GPU, and the IMLS autocast check it asserts (no timing assertions)."""

import json
import os
import subprocess

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def test_dry_run_measures_every_model_and_precision(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", "local/gpu_benchmark.sh", "--dry-run", "--json_out", str(out)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["dry_run"] is True and res["device"] == "cpu"
    got = {(r["row"], r["precision"]) for r in res["train"] if "error" not in r}
    assert got == {(m, p) for m in ("iml_spikeformer", "conformer") for p in ("fp32", "bf16")}
    for r in res["train"]:
        assert r["step_s_median"] > 0 and r["audio_s_per_s"] > 0 and r["final_loss"] == \
            r["final_loss"]  # not NaN
    chk = res["neuron_check"]
    assert chk["same_input_mismatch"] == 0.0 and chk["bf16_input_mismatch"] == 0.0
    (counts,) = res["counts"]
    assert 0.0 <= counts["mismatch"] <= 1.0 and counts["positions"] > 0
    assert "| 2x32 | conformer | bf16 |" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: it would run")
def test_without_a_gpu_it_skips_with_a_message_and_exit_0():
    proc = subprocess.run(["bash", "local/gpu_benchmark.sh"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped: no CUDA device" in proc.stdout and "--dry-run" in proc.stdout


def test_neuron_counts_do_not_depend_on_autocast():
    """Reference: the fp32 counts of the same values. A neuron that rounded in bf16 would
    differ at many positions (checked: rounding U / theta in bf16 moves counts)."""
    from espnet_iml.bench.gpu import neuron_autocast_check
    from espnet_iml.imls import IMLSNeuron

    chk = neuron_autocast_check(torch.device("cpu"))
    assert chk["same_input_mismatch"] == 0.0 and chk["bf16_input_mismatch"] == 0.0
    # the check can fail: counts from bf16 arithmetic differ from the fp32 ones
    u = torch.randn(8, 512, 64, generator=torch.Generator().manual_seed(0)) * 3
    counts, theta = IMLSNeuron(levels=4, threshold_init=0.9).fire(u)
    x16 = (u.bfloat16() / theta.bfloat16() + 0.5).floor().clamp(0, 4).float()
    assert (x16 != counts).float().mean() > 1e-3
