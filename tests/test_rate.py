"""Firing-rate-aware training (OUR DESIGN): espnet_iml.rate and ``model: espnet_iml``.

References: hand-worked counts, losses and straight-through gradients of one neuron; the
energy report's mean spike count (espnet_iml.energy, an independent implementation) for a
whole encoder; ESPnet's own ASR model for the loss without the rate term."""

import math
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from espnet_iml.encoder import IMLSpikeformerEncoder
from espnet_iml.energy import count_energy
from espnet_iml.imls import IMLSNeuron
from espnet_iml.lif import MultiStepLIF
from espnet_iml.rate import SpikeCountMeter, rate_loss

SMALL = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2,
             qkv_conv_kernel=3, frontend_channels=8, dropout_rate=0.0)


def _measure(module: nn.Module, *inputs) -> torch.Tensor:
    meter = SpikeCountMeter(module)
    meter.start()
    module(*inputs)
    return meter.stop()


def test_imls_count_loss_and_gradients_by_hand():
    """Constant threshold theta = |k| = 1, D = 4. u = 0.2, 0.7, 1.6, 5.0 (valid) and 3.0
    (masked): S = floor(u + 1/2) clamped to [0, 4] = 0, 1, 2, 4 and 0 -> r = 7 / 4 = 1.75.
    Target t = 1, weight w = 2: loss = 2 (0.75)^2 = 1.125, dL/dr = 2 w (r - t) = 3.
    Straight-through: dS/du = 1/theta inside 0 <= u/theta <= 4 (the first three), so
    dL/du = 3 / 4 = 0.75 there, 0 for the saturated 5.0 and the masked 3.0;
    dS/dtheta = -u/theta^2 inside, so dL/dk = 3 * -(0.2 + 0.7 + 1.6) / 4 = -1.875."""
    neuron = IMLSNeuron(levels=4, threshold="constant", threshold_init=1.0)
    u = torch.tensor([0.2, 0.7, 1.6, 5.0, 3.0]).view(1, 5, 1).requires_grad_()
    mask = torch.tensor([True, True, True, True, False]).view(1, 5, 1)
    r = _measure(neuron, u, mask)
    assert r.item() == pytest.approx(1.75)
    loss = rate_loss(r, weight=2.0, target=1.0)
    assert loss.item() == pytest.approx(1.125)
    loss.backward()
    assert u.grad.view(-1).tolist() == pytest.approx([0.75, 0.75, 0.75, 0.0, 0.0])
    assert neuron.k.grad.item() == pytest.approx(-1.875)
    # ceiling: r = 1.75 below a ceiling of 2 costs nothing; above a ceiling of 1 as target.
    assert rate_loss(r.detach(), 2.0, 2.0, "ceiling").item() == 0.0
    assert rate_loss(r.detach(), 2.0, 1.0, "ceiling").item() == pytest.approx(1.125)
    with pytest.raises(ValueError, match="rate mode"):
        rate_loss(r, 1.0, 1.0, "floor")


def test_lif_count_is_spikes_over_the_timesteps_by_hand():
    """T = 2, layout (T x B, 1) with B = 2, the same inputs (1.5, 3.0) at both steps.
    H = V + (x - V) / 2 from V = 0: t0 gives 0.75 (no spike) and 1.5 (spike, reset to 0);
    t1 gives 0.75 + 0.375 = 1.125 and 1.5, both spikes: [0, 1, 1, 1] (as in
    tests/test_benchmark.py). Two positions, 3 spikes: r = 1.5. Masking item 1: spikes
    [0, 0, 1, 0], one position, r = 1."""
    lif = MultiStepLIF(timesteps=2, tau=2.0)
    x = torch.tensor([[1.5], [3.0], [1.5], [3.0]])
    assert _measure(lif, x).item() == pytest.approx(1.5)
    mask = torch.tensor([[True], [False], [True], [False]])
    assert _measure(lif, x, mask).item() == pytest.approx(1.0)


@pytest.mark.parametrize("neuron", ["imls", "lif"])
def test_encoder_rate_is_the_energy_reports_mean_spike_count(neuron):
    """r of a padded batch equals the energy counter's mean_count_neurons for IMLS; for LIF
    (which the counter does not model) the LIF count is checked against the spikes."""
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, **SMALL, neuron=neuron, lif_timesteps=3).eval()
    xs, lens = torch.randn(2, 50, 80), torch.tensor([50, 31])
    meter = SpikeCountMeter(enc)
    if neuron == "imls":
        with torch.no_grad(), count_energy(enc, root_part="encoder") as counter:
            meter.start()
            enc(xs, lens)
            r = meter.stop()
        want = counter.report({}).totals["encoder"]["mean_count_neurons"]
        assert r.item() == pytest.approx(want, rel=1e-6)
    else:
        spikes, positions = [], []

        def keep(m, args, out):
            spikes.append(float(out.sum()))
            mask = args[1].bool().expand(out.shape)
            positions.append(float(mask.sum()) / m.timesteps)

        handles = [m.register_forward_hook(keep) for m in meter.neurons]
        with torch.no_grad():
            meter.start()
            enc(xs, lens)
            r = meter.stop()
        for h in handles:
            h.remove()
        assert len(spikes) == len(meter.neurons) and meter.max_count() == 3
        assert r.item() == pytest.approx(sum(spikes) / sum(positions), rel=1e-6)
    assert 0 < r.item() < meter.max_count()


@pytest.mark.parametrize("neuron, shift", [("imls", -0.3), ("imls", +0.3), ("lif", -0.2)])
def test_rate_loss_gradient_moves_r_to_the_target(neuron, shift):
    """Ten Adam steps on the rate loss alone bring r at least 40 % closer to a target 0.3
    below or above its starting value (LIF: 0.2 below, floored at 0.05)."""
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, **SMALL, neuron=neuron, lif_timesteps=2)
    xs, lens = torch.randn(4, 40, 80), torch.tensor([40, 35, 30, 25])
    meter = SpikeCountMeter(enc)
    opt = torch.optim.Adam(enc.parameters(), lr=0.02)

    def rate() -> torch.Tensor:
        meter.start()
        enc(xs, lens)
        return meter.stop()

    r0 = rate().item()
    target = max(0.05, r0 + shift)
    for _ in range(10):
        opt.zero_grad()
        rate_loss(rate(), weight=1.0, target=target).backward()
        opt.step()
    r1 = rate().item()
    assert abs(r1 - target) < 0.6 * abs(r0 - target), (r0, r1, target)


# ------------------------------------------------------------------------------------------
# model: espnet_iml through ESPnet's ASRTask


def _config(tmp_path: Path, model: str, model_conf: str, encoder: str = "iml_spikeformer",
            encoder_conf: str = "") -> Path:
    if encoder == "iml_spikeformer":
        encoder_conf = encoder_conf or textwrap.dedent("""\
            output_size: 16
            attention_heads: 2
            linear_units: 32
            num_blocks: 2
            qkv_conv_kernel: 3
            frontend_channels: 8""")
    enc = textwrap.indent(encoder_conf, "    ")
    mc = textwrap.indent(model_conf, "    ")
    text = (f"input_size: 80\nencoder: {encoder}\nencoder_conf:\n{enc}\n"
            "decoder: transformer\ndecoder_conf:\n    attention_heads: 2\n    linear_units: 32\n"
            "    num_blocks: 1\n"
            f"model: {model}\nmodel_conf:\n    ctc_weight: 0.3\n{mc}\n")
    path = tmp_path / f"{model}_{abs(hash(text))}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def token_list(tmp_path) -> Path:
    path = tmp_path / "tokens.txt"
    path.write_text("\n".join(["<blank>", "<unk>", "a", "b", "c", "d", "<sos/eos>"]) + "\n")
    return path


def _build(config: Path, token_list: Path):
    from espnet_iml.bin.model_info import build_model

    return build_model(config, token_list)


def _batch():
    g = torch.Generator().manual_seed(1)
    speech = torch.randn(2, 60, 80, generator=g)
    return dict(speech=speech, speech_lengths=torch.tensor([60, 44]),
                text=torch.tensor([[2, 3, 4], [5, 2, -1]]), text_lengths=torch.tensor([3, 2]))


def test_model_adds_the_rate_loss_to_espnets_loss(tmp_path, token_list):
    from espnet2.asr.espnet_model import ESPnetASRModel

    from espnet_iml.model import ESPnetIMLASRModel

    w, t = 3.0, 0.25
    torch.manual_seed(0)
    model = _build(_config(tmp_path, "espnet_iml", f"rate_weight: {w}\nrate_target: {t}"),
                   token_list)
    assert type(model) is ESPnetIMLASRModel and model.rate_meter is not None
    plain = _build(_config(tmp_path, "espnet", ""), token_list)
    assert type(plain) is ESPnetASRModel
    plain.load_state_dict(model.state_dict())
    model.eval()
    plain.eval()
    batch = _batch()
    with torch.no_grad():
        loss, stats, weight = model(**batch)
        base, base_stats, _ = plain(**batch)
        # r of the same (normalized) encoder input, measured by the meter alone
        model.rate_meter.start()
        model.encode(batch["speech"], batch["speech_lengths"])
        r = model.rate_meter.stop()
    assert stats["spike_count"].item() == pytest.approx(r.item(), rel=1e-6)
    assert stats["loss_rate"].item() == pytest.approx(w * (r.item() - t) ** 2, rel=1e-5)
    assert loss.item() == pytest.approx(base.item() + w * (r.item() - t) ** 2, rel=1e-5)
    assert stats["loss"].item() == pytest.approx(loss.item())
    assert stats["loss_ctc"].item() == pytest.approx(base_stats["loss_ctc"].item(), rel=1e-5)
    assert loss.shape == (1,) and weight.item() == 2
    # encode() alone (decoding) measures nothing: the meter is off outside forward()
    assert not model.rate_meter.active


def test_model_rate_loss_trains_the_thresholds(tmp_path, token_list):
    torch.manual_seed(0)
    model = _build(_config(tmp_path, "espnet_iml", "rate_weight: 100.0\nrate_target: 0.0"),
                   token_list).train()
    loss, stats, _ = model(**_batch())
    loss.sum().backward()
    ks = [n.k.grad for n in model.rate_meter.neurons]
    assert all(g is not None and math.isfinite(float(g)) for g in ks)
    # pushing r to 0 raises thresholds: dL/dk < 0 summed over neurons
    assert sum(float(g) for g in ks) < 0
    assert set(stats) >= {"loss", "loss_ctc", "loss_att", "loss_rate", "spike_count"}


def test_model_without_rate_is_espnets_model(tmp_path, token_list):
    torch.manual_seed(0)
    model = _build(_config(tmp_path, "espnet_iml", "rate_target: 0.5"), token_list).eval()
    assert model.rate_meter is None
    with torch.no_grad():
        _, stats, _ = model(**_batch())
    assert "loss_rate" not in stats and "spike_count" not in stats


@pytest.mark.parametrize("model_conf, message", [
    ("rate_weight: -1.0", "rate_weight must be a finite number >= 0 (0 = off; got -1.0)"),
    ("rate_weight: .nan", "rate_weight must be a finite number >= 0"),
    ("rate_target: -0.5", "rate_target must be a finite number >= 0 (got -0.5)"),
    ("rate_mode: floor", "rate_mode must be one of ('target', 'ceiling') (got 'floor')"),
    ("rate_weight: 1.0\nrate_target: 4.5",
     "rate_target (4.5) is above the largest count the encoder's neurons can emit (4)"),
])
def test_bad_values_name_the_option(tmp_path, token_list, model_conf, message):
    with pytest.raises(ValueError) as err:
        _build(_config(tmp_path, "espnet_iml", model_conf), token_list)
    assert message in str(err.value) and "espnet_iml model_conf" in str(err.value)


def test_rate_loss_needs_a_spiking_encoder(tmp_path, token_list):
    conf = "output_size: 16\nattention_heads: 2\nlinear_units: 32\nnum_blocks: 1"
    with pytest.raises(ValueError, match="rate_weight .* needs an encoder with spiking neurons"):
        _build(_config(tmp_path, "espnet_iml", "rate_weight: 1.0", encoder="transformer",
                       encoder_conf=conf), token_list)
