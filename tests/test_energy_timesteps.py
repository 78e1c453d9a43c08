"""Energy of a T-step SNN (``neuron: lif``): its own ops as run, its ANN twin at one step.

Reference: a toy network worked by hand (the LIF equations of espnet_iml/lif.py solved
for constant inputs), and the IMLS encoder of the same size, whose ANN twin is the same."""

import pytest
import torch
from torch import nn

from espnet2.asr.encoder.abs_encoder import AbsEncoder

from espnet_iml.encoder import IMLSpikeformerEncoder
from espnet_iml.energy import count_energy
from espnet_iml.lif import MultiStepEncoder, MultiStepLIF

SMALL = dict(output_size=32, attention_heads=4, linear_units=64, num_blocks=2, qkv_conv_kernel=5)


class _Toy(AbsEncoder):
    """x -> Linear(5, 5) = identity -> LIF -> Linear(5, 4)."""

    def __init__(self, timesteps):
        super().__init__()
        self.lin1 = nn.Linear(5, 5, bias=False)
        self.lif = MultiStepLIF(timesteps)  # tau 2, threshold 1, reset 0
        self.lin2 = nn.Linear(5, 4)
        with torch.no_grad():
            self.lin1.weight.copy_(torch.eye(5))

    def output_size(self):
        return 4

    def forward(self, xs, ilens, prev_states=None):
        return self.lin2(self.lif(self.lin1(xs))), ilens, None


def test_toy_two_step_snn_worked_by_hand():
    # constant input u, tau 2, threshold 1, hard reset to 0: H = V + (u - V) / 2.
    # u = 3: H = 1.5, 1.5 -> 2 spikes; u = 1.5: H = 0.75, 1.125 -> 1; u = 1: 0.5, 0.75 -> 0
    x = torch.tensor([[[3.0, 1.5, 1.0, 0.0, 3.0], [0.0, 0.0, 1.5, 3.0, 1.0]]])
    spikes = 2 + 1 + 2 + 1 + 2
    enc = MultiStepEncoder(_Toy(2), timesteps=2).eval()
    with torch.no_grad(), count_energy(enc, root_part="encoder", spike_driven=True) as c:
        enc(x, torch.tensor([2]))
    rep = c.report()
    lin1 = next(r for r in rep.layers if r["name"] == "encoder.lin1")
    lin2 = next(r for r in rep.layers if r["name"] == "encoder.lin2")
    # lin1 sees the same input at both steps: computed once, by the SNN as by the ANN
    assert (lin1["op_class"], lin1["macs_valid"], lin1["mac_macs"]) == ("MAC", 2 * 5 * 5, 50)
    # lin2: the twin's 2 x 5 x 4 MACs; the SNN accumulates 4 weights per spike, both steps
    assert (lin2["op_class"], lin2["macs_valid"], lin2["ac_ops"]) == ("AC", 40, 4 * spikes)
    assert lin2["mean_count"] == pytest.approx(spikes / 10)  # spikes per position over T
    (neuron,) = rep.neurons
    assert (neuron["levels"], neuron["valid"]) == (2, 10)
    assert neuron["mean_count"] == pytest.approx(spikes / 10)
    assert neuron["level_histogram"] == [5, 2, 3]  # positions with 0, 1, 2 spikes
    t = rep.totals["encoder"]
    e_snn, e_ann = 4.6 * 50 + 0.9 * 4 * spikes, 4.6 * (50 + 40)
    assert t["ratio_ann_snn"] == pytest.approx(e_ann / e_snn)
    # the quantized twin: counts over 2 steps take 3 levels, 2 bits
    assert t["ratio_qann_snn"] == pytest.approx((4.6 * 40 * 2 / 32 + 4.6 * 50) / e_snn)
    # the neuron: per element and step one multiply and three adds; the twin one ReLU
    (thr,) = rep.elementwise  # 0 / 1 spikes: no threshold scale after lin2
    assert thr["kind"] == "threshold"
    assert (thr["mults"], thr["adds"], thr["ann_mults"], thr["ann_adds"]) == (20, 60, 0, 10)
    # no execution and no memory model for a T-step SNN
    assert t["ratio_ann_snn_strict"] is None and t["ratio_ann_snn_with_memory"] is None
    assert "| encoder | 90 |" in rep.to_markdown()


def _encoder(**kw):
    torch.manual_seed(0)
    return IMLSpikeformerEncoder(80, **SMALL, **kw).double().eval()


@pytest.mark.parametrize("timesteps", [1, 3])
def test_lif_encoder_has_the_imls_encoders_ann_twin(timesteps, tmp_path):
    g = torch.Generator().manual_seed(1)
    x, lens = torch.randn(1, 70, 80, generator=g, dtype=torch.float64), torch.tensor([70])
    reports = {}
    for neuron in ("imls", "lif"):
        enc = _encoder(neuron=neuron, lif_timesteps=timesteps)
        with torch.no_grad(), count_energy(enc, root_part="encoder", spike_driven=True) as c:
            enc(x, lens)
        reports[neuron] = c.report(dict(title=neuron))
    imls, lif = reports["imls"], reports["lif"]
    assert [r["name"] for r in lif.layers] == [r["name"] for r in imls.layers]
    for a, b in zip(imls.layers, lif.layers):
        assert b["macs_valid"] == pytest.approx(a["macs_valid"]), a["name"]
        assert b["op_class"] == a["op_class"], a["name"]
    conv1 = next(r for r in lif.layers if r["name"] == "embed.conv1")
    assert conv1["mac_macs"] == pytest.approx(conv1["macs_valid"])  # computed once
    t = lif.totals["encoder"]
    assert t["e_ann_pj"] == pytest.approx(imls.totals["encoder"]["e_ann_pj"])
    assert 0 <= t["mean_count_neurons"] <= timesteps
    # the SNN's accumulates are its spikes' fan-outs over all T steps
    assert t["ac_ops"] == pytest.approx(sum(r["ac_ops"] for r in lif.layers))
    assert t["ratio_ann_snn_strict"] is None  # hooks only: LIF has no spike-driven form
    assert lif.save(tmp_path)[-1].name == "energy_breakdown.png"
    row = next(l for l in (tmp_path / "energy.md").read_text().splitlines()
               if l.startswith("| encoder |"))
    assert (row.split(" | ")[-3] == "-") == (timesteps > 1)  # + memory: none for T > 1
