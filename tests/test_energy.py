"""Energy counter (espnet_iml.energy): hand-computable networks, spike provenance, padding,
folding invariance, and the CLI on a trained-like and a fresh model."""

import json
import os
import subprocess
import sys

import pytest
import torch
from bn_stats import randomize_batchnorm
from torch import nn

from espnet_iml.attention import MatMul
from espnet_iml.encoder import IMLSpikeformerEncoder
from espnet_iml.energy import (
    E_AC_PJ,
    E_MAC_PJ,
    conv_macs,
    count_energy,
    linear_macs,
    matmul_macs,
)
from espnet_iml.imls import IMLSNeuron

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(output_size=32, attention_heads=4, linear_units=64, num_blocks=2, qkv_conv_kernel=5)


def _layer(report, name):
    return next(r for r in report.layers if r["name"] == name)


def _neuron(levels=4):
    """Constant threshold k = 1: counts = clamp(floor(u + 1/2), 0, D), output = counts."""
    return IMLSNeuron(levels=levels, threshold="constant", threshold_init=1.0)


# ----------------------------------------------------------------------------- MACs


class _Ops(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 7)
        self.c1 = nn.Conv1d(4, 6, 3, groups=2)
        self.c2 = nn.Conv2d(1, 4, 3, 2)
        self.mm = MatMul()

    def forward(self, x, y, z, a, b):
        return self.lin(x), self.c1(y), self.c2(z), self.mm(a, b)


def test_macs_of_linear_conv_matmul():
    net = _Ops()
    x, y, z = torch.randn(2, 3, 5), torch.randn(2, 4, 10), torch.randn(1, 1, 9, 9)
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    with torch.no_grad(), count_energy(net, root_part="encoder") as c:
        net(x, y, z, a, b)
    rep = c.report()
    # by hand: Linear 2*3 tokens x 5 x 7; Conv1d out (2, 6, 8) x (4/2) x 3;
    # Conv2d out (1, 4, 4, 4) x 1 x 3 x 3; MatMul 2 x 3 x 4 x 5
    expected = {"lin": 210, "c1": 576, "c2": 576, "mm": 120}
    for name, macs in expected.items():
        row = _layer(rep, name)
        assert row["macs"] == macs and row["macs_valid"] == macs
        assert row["op_class"] == "MAC"  # fed real values
        assert row["e_snn"] == row["e_ann"] == E_MAC_PJ * macs
    assert linear_macs((2, 3, 5), 5, 7) == 210
    assert conv_macs((2, 6, 8), 4, 2, (3,)) == 576
    assert conv_macs((1, 4, 4, 4), 1, 1, (3, 3)) == 576
    assert matmul_macs((2, 3, 4), (2, 4, 5)) == 120
    assert matmul_macs((3, 4), (7, 4, 5)) == 7 * 3 * 4 * 5  # broadcast batch
    assert rep.totals["encoder"]["ratio_ann_snn"] == 1.0


# ----------------------------------------------------------------------------- all-spiking


class _SpikingMLP(nn.Module):
    """IMLS -> Linear(4, 3) -> IMLS -> Linear(3, 2): every synaptic layer is fed spikes."""

    def __init__(self):
        super().__init__()
        self.n1, self.n2 = _neuron(), _neuron()
        self.l1 = nn.Linear(4, 3, bias=False)
        self.l2 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.l1.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]))
            self.l2.weight.fill_(0.5)

    def forward(self, x):
        return self.l2(self.n2(self.l1(self.n1(x))))


@pytest.mark.parametrize(
    "x, r1, r2",
    [
        # counts [0,1,2,4] and [1,1,0,3]: r1 = 12/8; layer-1 outputs [0,1,0], [1,1,0]: r2 = 3/6
        ([[0.0, 1.0, 2.0, 5.0], [1.0, 1.2, 0.0, 3.0]], 1.5, 0.5),
        # sparse: r1 = 2/8, r2 = 1/6, the network ratio exceeds 5.11
        ([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], 0.25, 1 / 6),
    ],
)
def test_all_spiking_network_ratio_is_5_11_over_r(x, r1, r2):
    net = _SpikingMLP()
    with torch.no_grad(), count_energy(net, root_part="encoder") as c:
        net(torch.tensor(x)[None])
    rep = c.report()
    l1, l2 = _layer(rep, "l1"), _layer(rep, "l2")
    assert (l1["op_class"], l2["op_class"]) == ("AC", "AC")
    assert (l1["macs"], l2["macs"]) == (2 * 4 * 3, 2 * 3 * 2)
    assert l1["mean_count"] == r1 and l2["mean_count"] == pytest.approx(r2, rel=1e-15)
    assert l1["spike_sources"] == ["n1"] and l2["spike_sources"] == ["n2"]
    r_w = (24 * r1 + 12 * r2) / 36  # MAC-weighted mean count
    t = rep.totals["encoder"]
    assert t["mean_count_ac_layers"] == pytest.approx(r_w, rel=1e-15)
    assert t["e_snn_pj"] == pytest.approx(E_AC_PJ * 36 * r_w, rel=1e-15)
    assert t["e_ann_pj"] == E_MAC_PJ * 36
    assert t["ratio_ann_snn"] == pytest.approx((E_MAC_PJ / E_AC_PJ) / r_w, rel=1e-14)
    if r_w < 1:
        assert t["ratio_ann_snn"] > 5.11
    # neuron statistics: mean counts and the level histogram
    n1 = next(n for n in rep.neurons if n["name"] == "n1")
    assert n1["mean_count"] == r1 and sum(n1["level_histogram"]) == 8


# ----------------------------------------------------------------------------- provenance


class _Provenance(nn.Module):
    def __init__(self):
        super().__init__()
        self.n = _neuron()
        self.fed_real = nn.Linear(4, 2)
        self.fed_spikes_view = nn.Linear(2, 2)
        self.fed_copy = nn.Linear(4, 2)
        self.mixed = nn.Linear(4, 2)

    def forward(self, x):
        s = self.n(x)  # (1, 2, 4) integer counts
        self.fed_real(x.round())  # integer-valued but not produced by a neuron: real
        self.fed_spikes_view(s.transpose(1, 2)[:, 1:3].transpose(1, 2))  # a view: spikes
        self.fed_copy(s + 0.0)  # computed from spikes by another op: real
        self.mixed(s)
        self.mixed(x)
        return s


def test_real_input_is_mac_spike_input_is_ac_by_provenance():
    net = _Provenance()
    x = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [4.0, 0.0, 1.0, 1.0]]])
    with torch.no_grad(), count_energy(net, root_part="encoder") as c:
        net(x)
    rep = c.report()
    real = _layer(rep, "fed_real")
    assert real["op_class"] == "MAC" and real["e_snn"] == E_MAC_PJ * 16
    assert _layer(rep, "fed_copy")["op_class"] == "MAC"
    view = _layer(rep, "fed_spikes_view")
    # the view holds channels 1..2 of both tokens: counts [1, 2] and [0, 1] -> mean 1.0
    assert view["op_class"] == "AC" and view["mean_count"] == 1.0
    assert view["e_snn"] == E_AC_PJ * 8 * 1.0
    mixed = _layer(rep, "mixed")
    assert mixed["op_class"] == "mixed" and mixed["calls"] == 2
    assert mixed["e_snn"] == pytest.approx(E_AC_PJ * 16 * 12 / 8 + E_MAC_PJ * 16)
    assert mixed["e_ann"] == E_MAC_PJ * 32


def test_freed_neuron_output_address_is_not_spikes():
    """A tensor that reuses the address of a freed neuron output is real-valued."""
    n, lin = _neuron(), nn.Linear(64, 64)
    with torch.no_grad(), count_energy(nn.ModuleDict(dict(n=n, lin=lin))) as c:
        s = n(torch.rand(8, 64) * 3)
        ptr = s.untyped_storage().data_ptr()
        del s
        for _ in range(20):  # the allocator usually hands the block back at once
            y = torch.randn(8, 64)
            if y.untyped_storage().data_ptr() == ptr:
                break
        lin(y)
    assert _layer(c.report(), "lin")["op_class"] == "MAC"


# ----------------------------------------------------------------------------- padding


class _Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.n = _neuron()
        self.lin = nn.Linear(3, 2)

    def forward(self, x, mask):
        return self.lin(self.n(x, mask))


def test_padded_frames_excluded_from_counts():
    net = _Masked()
    x = torch.tensor([[[1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [4.0, 4.0, 4.0]],
                      [[1.0, 1.0, 1.0], [4.0, 4.0, 4.0], [4.0, 4.0, 4.0]]])
    lengths = torch.tensor([2, 1])
    mask = (torch.arange(3)[None] < lengths[:, None])[..., None]
    with torch.no_grad(), count_energy(net, root_part="encoder") as c:
        net(x, mask)
    rep = c.report()
    # valid counts: utt 0 frames [1,2,0], [3,0,0]; utt 1 frame [1,1,1] -> 9 over 9 positions
    neuron = rep.neurons[0]
    assert neuron["valid"] == 9 and neuron["mean_count"] == 1.0
    lin = _layer(rep, "lin")
    assert lin["mean_count"] == 1.0
    assert lin["macs"] == 6 * 3 * 2 and lin["macs_valid"] == 3 * 3 * 2
    # the same as the three valid frames alone, unpadded
    with torch.no_grad(), count_energy(net, root_part="encoder") as c2:
        net(torch.cat([x[0, :2], x[1, :1]])[None], None)
    alone = _layer(c2.report(), "lin")
    assert (alone["macs_valid"], alone["ac_ops"], alone["e_snn"]) == (
        lin["macs_valid"], lin["ac_ops"], lin["e_snn"])


def _encoder(**kw):
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, **SMALL, **kw).double()
    return randomize_batchnorm(enc).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 90, 80, generator=g, dtype=torch.float64), torch.tensor([90, 52])


def test_encoder_firing_is_the_same_alone_and_in_a_padded_batch():
    enc = _encoder()
    x, lens = _batch()
    with torch.no_grad(), count_energy(enc, root_part="encoder") as c:
        enc(x, lens)
    batched = c.report()
    with torch.no_grad(), count_energy(enc, root_part="encoder") as c:
        for i in range(2):
            enc(x[i : i + 1, : lens[i]], lens[i : i + 1])
            c.release()
    alone = c.report()
    for nb, na in zip(batched.neurons, alone.neurons):
        assert nb["name"] == na["name"]
        assert nb["valid"] == na["valid"]
        assert nb["mean_count"] == pytest.approx(na["mean_count"], abs=1e-12)
    for lb, la in zip(batched.layers, alone.layers):
        # A V: the real-valued scores A carry no validity mask, so in a padded batch the
        # events of V also fan out to padded query rows (the CLI runs one utterance at a time)
        if lb["op_class"] == "AC" and not lb["name"].endswith(".av"):
            assert lb["ac_ops"] == pytest.approx(la["ac_ops"], rel=1e-12), lb["name"]


@pytest.mark.parametrize("spiking_frontend", [True, False])
def test_encoder_totals_are_the_same_folded_and_unfolded(spiking_frontend):
    enc = _encoder(spiking_frontend=spiking_frontend)
    x, lens = _batch()
    reports = {}
    for fold in (True, False):
        for m in enc.modules():
            if hasattr(m, "fold_in_eval"):
                m.fold_in_eval = fold
        with torch.no_grad(), count_energy(enc, root_part="encoder") as c:
            enc(x, lens)
        reports[fold] = c.report()
    folded, unfolded = reports[True], reports[False]
    assert [r["name"] for r in folded.layers] == [r["name"] for r in unfolded.layers]
    for a, b in zip(folded.layers, unfolded.layers):
        assert (a["macs"], a["op_class"]) == (b["macs"], b["op_class"]), a["name"]
    for key in ("macs", "macs_valid", "e_ann_pj", "e_snn_pj", "e_elementwise_pj"):
        assert folded.totals["encoder"][key] == unfolded.totals["encoder"][key], key
    kinds = {r["kind"] for r in folded.layers}
    assert {"RepTemporalProjection", "LinearBN", "MatMul", "Conv2d", "Linear"} <= kinds
    # the front end decides the ratio: conv1 is MAC either way, conv2/out only when real-fed
    ratio = folded.totals["encoder"]["ratio_ann_snn"]
    assert _layer(folded, "embed.conv1")["op_class"] == "MAC"
    assert _layer(folded, "embed.conv2")["op_class"] == ("AC" if spiking_frontend else "MAC")
    assert (ratio > 3.0) if spiking_frontend else (1.0 < ratio < 2.0)
    el = {e["kind"] for e in folded.elementwise}
    assert {"threshold", "decay mask", "depthwise temporal filter", "attention scale"} <= el


def test_report_files(tmp_path):
    enc = _encoder()
    x, lens = _batch()
    with torch.no_grad(), count_energy(enc, root_part="encoder") as c:
        enc(x[:1], lens[:1])
    paths = c.report(dict(title="t")).save(tmp_path)
    assert {p.name for p in paths} == {"energy.md", "energy.json", "energy_spike_counts.png",
                                       "energy_breakdown.png"}
    data = json.loads((tmp_path / "energy.json").read_text())
    assert data["totals"]["encoder"]["ratio_ann_snn"] > 1
    assert "| embed.conv2 | Conv2d | AC |" in (tmp_path / "energy.md").read_text()
    for n in enc.neurons():  # recording flags restored, nothing kept
        assert n.recording is False and n.last_counts is None


# ----------------------------------------------------------------------------- CLI


def test_cli_fresh_model_both_frontends(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        "input_size: 80\nencoder: iml_spikeformer\nencoder_conf:\n  output_size: 32\n"
        "  attention_heads: 2\n  linear_units: 64\n  num_blocks: 2\n  qkv_conv_kernel: 5\n"
        "decoder: transformer\ndecoder_conf:\n  attention_heads: 2\n  linear_units: 64\n"
        "  num_blocks: 1\nmodel_conf:\n  ctc_weight: 0.3\n"
    )
    import kaldiio

    g = torch.Generator().manual_seed(0)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/feats.ark,{tmp_path}/feats.scp") as w:
        for i, frames in enumerate((230, 170, 120)):
            w(f"utt{i}", torch.randn(frames, 80, generator=g).numpy())
    out = tmp_path / "out"
    scratch = tmp_path / "scratch"  # the tool's temporary files go here, and must be gone after
    scratch.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", TMPDIR=str(scratch))
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_iml.bin.energy", "--config", str(cfg),
         "--data_path_and_name_and_type", f"{tmp_path}/feats.scp,speech,kaldi_ark",
         "--max_utts", "2", "--sram_pj_per_64bit", "20", "--output_dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [p.name for p in scratch.iterdir() if p.name.startswith("espnet_iml")] == []
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("energy_ratio_encoder=")]
    assert len(lines) == 1
    ratio = float(lines[0].split("=", 1)[1])
    data = json.loads((out / "energy.json").read_text())
    assert set(data["settings"]) == {"spiking_frontend", "real_frontend"}
    spk = data["settings"]["spiking_frontend"]
    assert ratio == pytest.approx(spk["totals"]["encoder"]["ratio_ann_snn"], rel=1e-3)
    assert spk["meta"]["utterances"] == 2
    # the memory model's SRAM constant is the one asked for (it was once parsed and dropped)
    assert spk["constants"]["SRAM_pJ_per_64bit"] == 20.0
    # the strict headline: counted from the encoder's spike-driven execution
    strict_lines = [ln for ln in proc.stdout.splitlines()
                    if ln.startswith("energy_ratio_encoder_strict=")]
    assert len(strict_lines) == 1
    strict = float(strict_lines[0].split("=", 1)[1])
    assert spk["totals"]["encoder"]["executed"]
    assert spk["meta"]["encoder_counts"].startswith("spike-driven")
    assert strict == pytest.approx(spk["totals"]["encoder"]["ratio_ann_snn_strict"], rel=1e-3)
    assert data["energy_ratio_encoder_strict"] == spk["totals"]["encoder"]["ratio_ann_snn_strict"]
    assert 1.0 < strict < ratio
    # the spike-driven run equals the float model in float64 on the counted utterances
    dev_lines = [ln for ln in proc.stdout.splitlines()
                 if ln.startswith("spike_driven_max_abs_deviation=")]
    assert len(dev_lines) == 1
    assert 0.0 <= data["spike_driven_max_abs_deviation"] < 1e-9
    real_ratio = data["settings"]["real_frontend"]["totals"]["encoder"]["ratio_ann_snn"]
    assert ratio > real_ratio > 1.0
    # the ESPnet decoder and the CTC projection are real-valued: all MAC, counted apart
    for part in ("decoder", "ctc"):
        assert spk["totals"][part]["ratio_ann_snn"] == 1.0
        assert spk["totals"][part]["macs"] > 0
    assert any(r["name"].endswith("src_attn.qk") for r in spk["layers"])
    for name in ("energy.md", "energy_spiking_frontend_breakdown.png",
                 "energy_real_frontend_spike_counts.png"):
        assert (out / name).is_file()


def test_model_info_leaves_no_temporary_directory(tmp_path, monkeypatch, capsys):
    import tempfile

    from espnet_iml.bin import model_info

    cfg = tmp_path / "train.yaml"
    cfg.write_text("input_size: 80\nencoder: iml_spikeformer\nencoder_conf:\n  output_size: 16\n"
                   "  attention_heads: 2\n  linear_units: 32\n  num_blocks: 1\n  qkv_conv_kernel: 3\n"
                   "decoder: transformer\ndecoder_conf:\n  attention_heads: 2\n  linear_units: 32\n"
                   "  num_blocks: 1\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    counts = model_info.main(["--config", str(cfg), "--vocab_size", "10"])
    # the output layer alone: 10 tokens x 16 + 10 biases in the CTC projection
    assert counts["ctc"] == 10 * 16 + 10 and counts["total"] == sum(v for k, v in counts.items() if k != "total")
    assert list(scratch.iterdir()) == []
    assert "total:" in capsys.readouterr().out


def test_elementwise_ops_of_norms_activations_and_attention_by_hand():
    # Written out per element (espnet_iml/energy/elementwise.py): LayerNorm 3 multiplies and 4
    # adds, ReLU 1 add, SiLU 3 multiplies and 1 add; HD-RepSSA one multiply a score for the
    # scale and one for the decay mask; a block adds its two branches back (2 adds a value).
    net = nn.Sequential(nn.LayerNorm(4), nn.ReLU(), nn.SiLU())
    with torch.no_grad(), count_energy(net, root_part="net") as c:
        net(torch.randn(2, 3, 4))
    el = {e["name"]: e for e in c.report().elementwise}
    n = 2 * 3 * 4
    assert el["0"]["kind"] == "norm (LayerNorm)"
    assert (el["0"]["mults"], el["0"]["adds"]) == (3 * n, 4 * n)
    assert (el["1"]["mults"], el["1"]["adds"]) == (0, n)
    assert (el["2"]["mults"], el["2"]["adds"]) == (3 * n, n)

    enc = _encoder()
    x, lens = _batch()
    with torch.no_grad(), count_energy(enc, root_part="encoder") as c:
        out, _, _ = enc(x, lens)
    el = {e["name"]: e for e in c.report().elementwise}
    b, t, d = out.shape
    scores = b * enc.encoders[0].attn.heads * t * t
    assert el["encoders.0.attn.scale"]["mults"] == scores
    assert el["encoders.0.attn.decay_mask"]["mults"] == scores
    assert el["encoders.0.residual"]["adds"] == 2 * b * t * d
