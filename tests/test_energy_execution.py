"""Energy counted from the spike-driven execution (espnet_iml.inference +
espnet_iml.energy): the report's AC and MAC counts are the operations that actually ran
(intercepted at the torch level), they match a hand count on a one-block encoder, the
generous per-layer numbers match the hook counter's, and the strict ratio follows the
formula."""

import math

import pytest
import torch
from bn_stats import randomize_batchnorm
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from espnet_iml.encoder import IMLSpikeformerEncoder
from espnet_iml.energy import E_AC_PJ, E_MAC_PJ, EnergyReport, Tally, count_energy
from espnet_iml.inference import spike_driven

IDIM = 20


def _encoder(seed=0, idim=IDIM, **kw):
    torch.manual_seed(seed)
    conf = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2,
                qkv_conv_kernel=3, threshold_init=0.5)
    enc = IMLSpikeformerEncoder(idim, **{**conf, **kw}).double()
    return randomize_batchnorm(enc).eval()


def _input(frames=(60, 41), idim=IDIM, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(len(frames), max(frames), idim, generator=g, dtype=torch.float64),
            torch.tensor(frames))


def _binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


MULTIPLIES = {"mul", "__mul__", "__rmul__", "__imul__", "div", "__truediv__", "__rtruediv__",
              "__itruediv__", "true_divide", "rsqrt", "mean"}


class ExecutedOps(TorchFunctionMode):
    """Counts, at the torch level, what a forward executes (independently of the tally):

    * ``ac``: accumulates of products whose first operand is 0/1 (the executor puts the
      events there) = events x fan-out, fan-out from the shapes (Linear: out features;
      matmul: the other operand's last dim; Conv2d: the outputs whose window holds the
      event, via a window sum of ones);
    * ``mults``: products of real values: dense MACs of Linear / matmul / conv on real
      inputs, one per output element of every float multiply, division, rsqrt and mean.
    """

    def __init__(self):
        super().__init__()
        self.ac = 0
        self.mults = 0
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in MULTIPLIES and isinstance(out, torch.Tensor) and out.is_floating_point():
            self.mults += out.numel()
        elif func is F.linear:
            x, w = args[0], args[1]
            if _binary(x):
                self.ac += int((x != 0).sum()) * w.size(0)
            else:
                self.mults += x.numel() // x.size(-1) * w.numel()
        elif name in ("matmul", "__matmul__"):
            a, b = args[0], args[1]
            if _binary(a):
                self.ac += int((a != 0).sum()) * b.size(-1)
            else:
                self.mults += out.numel() * a.size(-1)
        elif func in (F.conv1d, F.conv2d):
            x, w = args[0], args[1]
            stride = args[3] if len(args) > 3 else kwargs.get("stride", 1)
            if _binary(x):
                ones = torch.ones((1, 1) + tuple(w.shape[2:]), dtype=x.dtype)
                windows = func(x.sum(1, keepdim=True), ones, None, stride)
                self.ac += int(windows.sum()) * w.size(0)
            else:
                self.mults += out.numel() * math.prod(w.shape[1:])
        return out


def _executed(enc, x, lens):
    executor = spike_driven(enc)
    executor(x, lens)  # the decay mask is a constant table per length: build it first
    tally = Tally(root_part="encoder", parts=())
    tally.executed_parts.append("encoder")
    with ExecutedOps() as ops, torch.no_grad():
        executor(x, lens, tally=tally)
    return tally, ops


CONFIGS = [dict(), dict(spiking_frontend=False), dict(branch_norm="layer", causal=True),
           dict(hdm=False, causal=True, qkv_conv_kernel=0), dict(threshold="constant")]


@pytest.mark.parametrize("kw", CONFIGS)
def test_report_counts_are_the_executed_operations(kw):
    enc = _encoder(**kw)
    x, lens = _input()
    tally, ops = _executed(enc, x, lens)
    assert ops.ac > 0 and ops.mults > 0
    assert sum(st.ac_ops for st in tally.layers.values()) == ops.ac
    assert (sum(st.mac_ops for st in tally.layers.values())
            + sum(e.mults for e in tally.elementwise.values())) == ops.mults
    t = EnergyReport.build(tally, {}).totals["encoder"]
    assert t["ac_ops"] == ops.ac and t["strict_mac_ops"] == ops.mults
    # the same counts come out of count_energy(spike_driven=True) on the model itself
    with torch.no_grad(), count_energy(enc, root_part="encoder", spike_driven=True) as c:
        enc(x, lens)
    t2 = c.report().totals["encoder"]
    for key in ("ac_ops", "strict_mac_ops", "strict_add_ops", "strict_ann_mac_ops",
                "strict_ann_add_ops", "macs_valid", "e_snn_strict_pj"):
        assert t2[key] == t[key], key
    assert t2["executed"] and t2["ratio_ann_snn_strict"] == pytest.approx(
        t["ratio_ann_snn_strict"], rel=1e-15)


def test_accumulates_follow_the_events_present(monkeypatch):
    """Take one event out of one slot fed to ffn.w1: exactly its fan-out (the FFN's
    units) fewer accumulates are counted."""
    from espnet_iml.inference import events

    enc = _encoder()
    x, lens = _input(frames=(60,))
    base, _ = _executed(enc, x, lens)
    original = events.event_linear

    def one_less(slots, weight, tally, name, kind, sources):
        if name == "encoders.1.ffn.w1":
            slots = slots.clone()
            slots[0].view(-1)[int(torch.nonzero(slots[0].reshape(-1))[0])] = 0.0
        return original(slots, weight, tally, name, kind, sources)

    monkeypatch.setattr(events, "event_linear", one_less)
    less, _ = _executed(enc, x, lens)
    before, after = base.layers["encoders.1.ffn.w1"], less.layers["encoders.1.ffn.w1"]
    assert before.ac_ops - after.ac_ops == 32
    assert before.nonzero_macs - after.nonzero_macs == 32  # slot 0 holds the non-zeros


# ----------------------------------------------------------------------------- by hand


def _uses(n_in: int, n_out: int, taps) -> list:
    """For each input index of a kernel-3 stride-2 conv: how many (output, tap in
    ``taps``) pairs read it, written out as a double loop."""
    return [sum(1 for o in range(n_out) for k in taps if 2 * o + k == i) for i in range(n_in)]


def test_hand_count_of_a_one_block_encoder():
    """Every count of a 1-block encoder (d = 8, 2 heads, FFN 16, K = 3, D = 4, 15 fbank
    bins, 23 frames) by formula from the FLOAT model's own spike counts."""
    d, h, units, k, levels = 8, 2, 16, 3, 4
    enc = _encoder(idim=15, output_size=d, attention_heads=h, linear_units=units,
                   num_blocks=1, qkv_conv_kernel=k)
    x, lens = _input(frames=(23,), idim=15)
    for n in enc.neurons():
        n.recording = True
    with torch.no_grad():
        enc(x, lens)
    counts = {name: m.last_counts for name, m in enc.named_modules() if hasattr(m, "last_counts")}
    tally, _ = _executed(enc, x, lens)
    t1, f1 = (23 - 1) // 2, (15 - 1) // 2  # 11, 7
    t2, f2 = (t1 - 1) // 2, (f1 - 1) // 2  # 5, 3
    c = d  # frontend_channels 0: the model width

    # accumulates: events x fan-out
    s1 = counts["embed.neuron1"][0]  # (C, T1, F1)
    rows, cols = _uses(t1, t2, range(3)), _uses(f1, f2, range(3))
    conv2 = sum(float(s1[:, t, f].sum()) * rows[t] * cols[f] for t in range(t1) for f in range(f1))
    expected_ac = {
        "embed.conv2": conv2 * c,
        "embed.out": float(counts["embed.neuron2"].sum()) * d,
        "encoders.0.attn.qkv": float(counts["encoders.0.attn_neuron"].sum()) * 3 * d,
        "encoders.0.attn.qk": float(counts["encoders.0.attn.q_neuron"].sum()) * t2,
        "encoders.0.attn.av": float(counts["encoders.0.attn.v_neuron"].sum()) * t2,
        "encoders.0.attn.out": float(counts["encoders.0.attn.out_neuron"].sum()) * d,
        "encoders.0.ffn.w1": float(counts["encoders.0.ffn.in_neuron"].sum()) * units,
        "encoders.0.ffn.w2": float(counts["encoders.0.ffn.mid_neuron"].sum()) * d,
    }
    assert {n: st.ac_ops for n, st in tally.layers.items() if st.ac_ops} == expected_ac
    assert tally.layers["embed.conv1"].mac_ops == c * t1 * f1 * 9
    dense = {"embed.conv2": c * t2 * f2 * c * 9, "embed.out": t2 * c * f2 * d,
             "encoders.0.attn.qkv": t2 * d * 3 * d, "encoders.0.attn.qk": h * t2 * t2 * d // h,
             "encoders.0.attn.av": h * t2 * t2 * d // h, "encoders.0.attn.out": t2 * d * d,
             "encoders.0.ffn.w1": t2 * d * units, "encoders.0.ffn.w2": t2 * units * d}
    assert {n: st.macs_valid for n, st in tally.layers.items() if st.ac_ops} == dense

    # real multiplies, and other adds, by op
    def neuron(n_in, tokens):  # division per input, mean and |k| per token
        return n_in + 2 * tokens, (2 + levels) * n_in + tokens

    n_front1, n_front2 = neuron(c * t1 * f1, t1), neuron(c * f2 * t2, t2)
    n_tok = neuron(t2 * d, t2)
    n_qkv = neuron(t2 * d, t2)
    scores = h * t2 * t2
    mults = {
        "embed.neuron1.threshold": n_front1[0], "embed.conv2.theta_scale": 3 * c * t2 * f2,
        "embed.neuron2.threshold": n_front2[0], "embed.out.theta_scale": t2 * d,
        "encoders.0.attn_norm": t2 * d, "encoders.0.attn_neuron.threshold": n_tok[0],
        "encoders.0.attn.qkv.theta_scale": t2 * 3 * d,
        "encoders.0.attn.qkv.temporal_filter": t2 * 3 * d * k,
        **{f"encoders.0.attn.{q}_neuron.threshold": n_qkv[0] for q in "qkv"},
        "encoders.0.attn.score_scale": h * t2 + t2 + 2 * scores,
        "encoders.0.attn.decay_mask": scores,
        "encoders.0.attn.out_neuron.threshold": n_tok[0],
        "encoders.0.attn.out.theta_scale": t2 * d,
        "encoders.0.ffn.norm": t2 * d, "encoders.0.ffn.in_neuron.threshold": n_tok[0],
        "encoders.0.ffn.w1.theta_scale": t2 * units,
        "encoders.0.ffn.mid_neuron.threshold": neuron(t2 * units, t2)[0],
        "encoders.0.ffn.w2.theta_scale": t2 * d,
        "after_norm": t2 * (3 * d + 3),
    }
    got = {n: e.mults for n, e in tally.elementwise.items() if e.mults}
    assert got == mults
    adds = {
        "embed.neuron1.threshold": n_front1[1], "embed.neuron2.threshold": n_front2[1],
        "encoders.0.attn_neuron.threshold": n_tok[1],
        **{f"encoders.0.attn.{q}_neuron.threshold": n_qkv[1] for q in "qkv"},
        "encoders.0.attn.out_neuron.threshold": n_tok[1],
        "encoders.0.attn_residual": t2 * d,
        "encoders.0.ffn.in_neuron.threshold": n_tok[1],
        "encoders.0.ffn.mid_neuron.threshold": neuron(t2 * units, t2)[1],
        "encoders.0.ffn_residual": t2 * d,
        "after_norm": t2 * (2 * d + 1),
    }
    assert {n: e.adds for n, e in tally.elementwise.items() if e.adds} == adds

    # the strict energies, by formula
    t = EnergyReport.build(tally, {}).totals["encoder"]
    snn_mults = c * t1 * f1 * 9 + sum(mults.values())
    snn_adds = sum(expected_ac.values()) + sum(adds.values())
    neuron_inputs = c * t1 * f1 + c * f2 * t2 + 6 * t2 * d + t2 * units
    ann_mults = c * t1 * f1 * 9 + sum(dense.values()) + 2 * t2 * d + t2 * 3 * d * k + scores \
        + t2 * (3 * d + 3)
    ann_adds = neuron_inputs + 2 * t2 * d + t2 * (2 * d + 1)
    assert t["e_snn_strict_pj"] == pytest.approx(E_MAC_PJ * snn_mults + E_AC_PJ * snn_adds,
                                                 rel=1e-12)
    assert t["e_ann_strict_pj"] == pytest.approx(E_MAC_PJ * ann_mults + E_AC_PJ * ann_adds,
                                                 rel=1e-12)
    assert t["ratio_ann_snn_strict"] < t["ratio_ann_snn"]  # strict never flatters the SNN


# ----------------------------------------------------------------------------- vs the hooks


@pytest.mark.parametrize("spiking_frontend", [True, False])
def test_generous_counts_equal_the_hook_counter(spiking_frontend):
    """The hooks model each layer from its input's provenance; the execution counts the
    events it feeds. Per utterance their generous numbers agree layer by layer."""
    enc = _encoder(spiking_frontend=spiking_frontend)
    x, lens = _input(frames=(60,))
    reports = {}
    for executed in (False, True):
        with torch.no_grad(), count_energy(enc, root_part="encoder",
                                           spike_driven=executed) as c:
            enc(x, lens)
        reports[executed] = c.report()
    hooks, run = reports[False], reports[True]
    assert [r["name"] for r in hooks.layers] == [r["name"] for r in run.layers]
    for a, b in zip(hooks.layers, run.layers):
        assert a["op_class"] == b["op_class"], a["name"]
        for key in ("macs", "macs_valid", "mac_macs", "ac_ops", "nonzero_fraction"):
            assert (a[key] is None and b[key] is None) or a[key] == pytest.approx(
                b[key], rel=1e-12), (a["name"], key)
    assert [n["name"] for n in hooks.neurons] == [n["name"] for n in run.neurons]
    for a, b in zip(hooks.neurons, run.neurons):
        assert a["level_histogram"] == b["level_histogram"], a["name"]
    # strict numbers exist only where the encoder was executed
    assert hooks.totals["encoder"]["ratio_ann_snn_strict"] is None
    assert run.totals["encoder"]["ratio_ann_snn_strict"] > 1.0


def test_counter_reports_how_far_the_spike_driven_run_is_from_the_float_model(monkeypatch):
    """count_energy checks the spike-driven output against a float64 copy of the model it
    counts (the energy CLI prints it for trained recipe models): rounding-small on an
    honest run, and the size of the error when the spike-driven output is off."""
    enc = _encoder(seed=3)
    xs, ilens = _input()
    with torch.no_grad(), count_energy(enc, spike_driven=True) as counter:
        enc(xs.float().double(), ilens)
        report = counter.report({})
    assert 0.0 <= report.meta["spike_driven_max_abs_deviation"] < 1e-9

    import espnet_iml.inference as inference

    def off_by(encoder, dtype=torch.float64):
        executor = spike_driven(encoder, dtype)

        def run(xs_pad, lens, tally=None):
            out, olens, extra = executor(xs_pad, lens, tally=tally)
            return out + 1e-3 * (torch.arange(out.size(1)) == 0)[None, :, None], olens, extra

        return run

    monkeypatch.setattr(inference, "spike_driven", off_by)
    with torch.no_grad(), count_energy(enc, spike_driven=True) as counter:
        enc(xs, ilens)
        deviation = counter.report({}).meta["spike_driven_max_abs_deviation"]
    assert deviation == pytest.approx(1e-3, rel=1e-6)
