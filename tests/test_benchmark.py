"""Multi-step LIF baseline (espnet_iml.lif) and the benchmark CLI (no timing assertions)."""

import os
import subprocess
import sys

import pytest
import torch

from espnet_iml.encoder import IMLSpikeformerEncoder
from espnet_iml.imls import IMLSNeuron
from espnet_iml.lif import MultiStepEncoder, MultiStepLIF, lif_encoder, surrogate_spike

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lif_dynamics_by_hand():
    """tau 2, threshold 1, hard reset to 0, constant input 1.5 over T = 4:
    H1 = 0.75 (silent, V = 0.75); H2 = 0.75 + (1.5 - 0.75)/2 = 1.125 (fires, V = 0);
    H3 = 0.75 (silent); H4 = 1.125 (fires). Input 0.4: H = 0.2, 0.3, 0.35, 0.375 (never).
    Input 3.0: H1 = 1.5 fires every step."""
    lif = MultiStepLIF(timesteps=4, tau=2.0, v_threshold=1.0, v_reset=0.0)
    x = torch.tensor([1.5, 0.4, 3.0]).repeat(4, 1)  # (T x B, C) with B = 1
    s = lif(x).view(4, 3)
    assert s.tolist() == [[0, 0, 1], [1, 0, 1], [0, 0, 1], [1, 0, 1]]


def test_lif_timestep_layout_is_timestep_major_and_masked():
    """Rows of one timestep are contiguous blocks of the batch; batch items stay separate."""
    lif = MultiStepLIF(timesteps=2, tau=2.0)
    x = torch.tensor([[1.5], [3.0], [1.5], [3.0]])  # t0: items (1.5, 3.0); t1: same
    assert lif(x).view(-1).tolist() == [0, 1, 1, 1]
    mask = torch.tensor([[True], [False], [True], [False]])
    assert lif(x, mask).view(-1).tolist() == [0, 0, 1, 0]
    with pytest.raises(ValueError, match="timesteps"):
        lif(torch.zeros(3, 1))


def test_lif_surrogate_gradient():
    """d spike / d input at t0 through H = x / tau: alpha sig(alpha (H - 1)) (1 - sig) / tau."""
    x = torch.tensor([1.0], requires_grad=True)
    surrogate_spike(x - 1.0, 4.0).sum().backward()
    assert x.grad.item() == pytest.approx(4.0 * 0.5 * 0.5)
    lif = MultiStepLIF(timesteps=1, tau=2.0, alpha=4.0)
    u = torch.tensor([[1.2]], requires_grad=True)
    lif(u).sum().backward()
    sg = torch.sigmoid(torch.tensor(4.0 * (0.6 - 1.0)))
    assert u.grad.item() == pytest.approx(float(4.0 * sg * (1 - sg) / 2.0))


def test_t_step_network_shapes_and_training():
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, output_size=32, attention_heads=2, linear_units=64,
                                num_blocks=2, qkv_conv_kernel=5)
    n_imls = len(enc.neurons())
    snn = lif_encoder(enc, timesteps=4)
    assert isinstance(snn, MultiStepEncoder)
    assert not any(isinstance(m, IMLSNeuron) for m in snn.modules())
    assert sum(isinstance(m, MultiStepLIF) for m in snn.modules()) == n_imls
    xs, lens = torch.randn(3, 60, 80), torch.tensor([60, 45, 30])
    out, olens, _ = snn(xs, lens)
    ref_out, ref_olens, _ = IMLSpikeformerEncoder(
        80, output_size=32, attention_heads=2, linear_units=64, num_blocks=2,
        qkv_conv_kernel=5)(xs, lens)
    assert out.shape == ref_out.shape == (3, 14, 32)
    assert torch.equal(olens, ref_olens)
    out.sum().backward()  # surrogate gradients reach the first layer
    assert snn.encoder.embed.conv1.weight.grad.abs().sum() > 0


def test_benchmark_cli_prints_every_row():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_iml.bin.benchmark", "--device", "cpu", "--threads", "1",
         "--batch", "2", "--seconds", "1", "--steps", "1", "--warmup", "0",
         "--output_size", "16", "--heads", "2", "--linear_units", "32", "--num_blocks", "1",
         "--kernel", "3", "--conformer_kernel", "3", "--vocab", "10"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ")]
    labels = ["iml_spikeformer (IMLS D=4, T=1)", "same network, binary LIF, T=4",
              "conformer (ESPnet)", "transformer (ESPnet)"]
    for label in labels:
        row = next((ln for ln in table if ln.startswith(f"| {label} |")), None)
        assert row is not None, proc.stdout
        assert "failed" not in row, row
    assert "time / IML" in table[0] and "memory / IML" in table[0]


def test_benchmark_rtf_compares_folded_and_training_forms():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_iml.bin.benchmark", "--no_train", "--rtf", "--threads",
         "1", "--rtf_utts", "1", "--rtf_seconds", "1", "--rtf_repeats", "1", "--beam", "1",
         "--output_size", "16", "--heads", "2", "--linear_units", "32", "--num_blocks", "1",
         "--kernel", "3", "--conformer_kernel", "3", "--vocab", "10", "--decoder_blocks", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for label in ("iml_spikeformer, folded eval form", "training form in eval",
                  "conformer (ESPnet) |"):
        assert any(label in ln for ln in proc.stdout.splitlines() if ln.startswith("| ")), \
            proc.stdout
    assert "failed" not in proc.stdout


def test_set_fold_switches_every_folding_module():
    from espnet_iml.bench.rtf import set_fold

    enc = IMLSpikeformerEncoder(80, output_size=16, attention_heads=2, linear_units=32,
                                num_blocks=1, qkv_conv_kernel=3).eval()
    # front end, block, FFN, and the LinearBN / Rep layers (attn.qkv, attn.out, w1, w2)
    assert set_fold(enc, False) == 7
    assert not enc.embed.fusable() and not enc.encoders[0].ffn.fold_in_eval
    set_fold(enc, True)
    assert enc.embed.fusable()
