"""Spike-driven inference (espnet_iml.inference): its output equals the float model's eval
output (float64, 1e-9) on fresh and trained encoders in every front-end / causal / HDM /
branch-norm setting, and each way of evaluating a spike-fed layer wrongly breaks that."""

import pytest
import torch
from bn_stats import randomize_batchnorm

from espnet_iml.encoder import IMLSpikeformerEncoder
from espnet_iml.inference import events, spike_driven

TINY = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2, qkv_conv_kernel=3)
IDIM = 20
TOL = 1e-9


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 60, IDIM, generator=g, dtype=torch.float64), torch.tensor([60, 41])


def _fresh(seed=0, **kw):
    """A fresh float64 encoder with non-trivial BatchNorm (so folding changes weights)."""
    torch.manual_seed(seed)
    enc = IMLSpikeformerEncoder(IDIM, **{**TINY, **kw}).double()
    return randomize_batchnorm(enc).eval()


def _trained(seed=0, steps=4, **kw):
    """A few Adam steps of the encoder alone on random features and targets (a stand-in
    for a recipe checkpoint, which tests cannot rely on): weights, thresholds k and the
    BatchNorm running statistics all move away from their initial values."""
    torch.manual_seed(seed)
    enc = IMLSpikeformerEncoder(IDIM, **{**TINY, **kw}).double()
    init = {k: v.clone() for k, v in enc.state_dict().items()}
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    x, lens = _batch(seed=7)
    enc.train()
    for _ in range(steps):
        out, olens, _ = enc(x, lens)
        valid = (torch.arange(out.size(1))[None] < olens[:, None])[..., None]
        target = torch.sin(torch.arange(out.size(-1), dtype=out.dtype))  # any fixed target
        loss = (((out - target) ** 2) * valid).sum() / valid.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = enc.state_dict()
    moved = [k for k in state if not torch.equal(state[k], init[k])]
    assert any(k.endswith("running_var") for k in moved) and any(k.endswith(".k") for k in moved)
    return enc.eval()


def _max_error(enc, executor=None, seed=1):
    x, lens = _batch(seed)
    with torch.no_grad():
        ref, olens, _ = enc(x, lens)
        out, olens2, _ = (executor or spike_driven(enc))(x, lens)
    assert torch.equal(olens, olens2) and out.shape == ref.shape
    valid = torch.arange(ref.size(1))[None] < olens[:, None]
    assert out[~valid].abs().max() == 0  # padded output frames are zeros
    return float((out - ref)[valid].abs().max())


@pytest.mark.parametrize("branch_norm", ["batch", "layer"])
@pytest.mark.parametrize("hdm", [True, False])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("spiking_frontend", [True, False])
def test_equals_float_model_fresh(spiking_frontend, causal, hdm, branch_norm):
    enc = _fresh(spiking_frontend=spiking_frontend, causal=causal, hdm=hdm,
                 branch_norm=branch_norm)
    assert _max_error(enc) < TOL


@pytest.mark.parametrize("kw", [dict(qkv_conv_kernel=0), dict(threshold="constant"),
                                dict(spike_levels=1), dict(spike_levels=7)])
def test_equals_float_model_other_options(kw):
    assert _max_error(_fresh(**kw)) < TOL


@pytest.mark.parametrize("kw", [dict(), dict(spiking_frontend=False, causal=True),
                                dict(branch_norm="layer", hdm=False)])
def test_equals_float_model_trained(kw):
    assert _max_error(_trained(**kw)) < TOL


def test_intermediate_ctc_outputs_equal():
    enc = _fresh(interctc_layer_idx=[1])
    x, lens = _batch()
    with torch.no_grad():
        (ref, ref_inter), olens, _ = enc(x, lens)
        (out, inter), _, _ = spike_driven(enc)(x, lens)
    valid = (torch.arange(ref.size(1))[None] < olens[:, None])
    assert [i for i, _ in inter] == [i for i, _ in ref_inter] == [1]
    assert (out - ref)[valid].abs().max() < TOL
    assert (inter[0][1] - ref_inter[0][1])[valid].abs().max() < TOL


# ----------------------------------------------------------------------------- wrong evaluation

SPIKE_FED = ["embed.conv2", "embed.out"] + [
    f"encoders.{b}.{layer}" for b in (0, 1)
    for layer in ("attn.qkv", "attn.qk", "attn.av", "attn.out", "ffn.w1", "ffn.w2")
]
# layers whose accumulated sum is scaled by one theta per input token
SCALED = ["embed.out"] + [f"encoders.{b}.{layer}" for b in (0, 1)
                          for layer in ("attn.qkv", "attn.out", "ffn.w1", "ffn.w2")]
SLOT_FNS = ("event_linear", "event_matmul_left", "event_matmul_right", "event_conv_taps")


@pytest.fixture(scope="module")
def busy():
    """A trained encoder whose neurons fire at every level (threshold scale 0.35), and the
    slots each spike-fed layer received on the test batch."""
    enc = _trained(seed=2, threshold_init=0.35)
    seen = {}
    originals = {f: getattr(events, f) for f in SLOT_FNS}

    def spy(fn):
        def run(*args, **kw):
            slots = args[1] if fn == "event_matmul_right" else args[0]
            name = args[3] if fn != "event_conv_taps" else args[4]
            seen.setdefault(name, []).append(slots.clone())
            return originals[fn](*args, **kw)
        return run

    with pytest.MonkeyPatch.context() as mp:
        for f in SLOT_FNS:
            mp.setattr(events, f, spy(f))
        assert _max_error(enc) < TOL
    return enc, seen


def test_every_slot_of_every_spike_fed_layer_carries_events(busy):
    """Precondition of the tests below: dropping or perturbing any slot changes the input,
    and the thresholds differ from token to token (and frame to frame)."""
    enc, seen = busy
    assert sorted(seen) == sorted(SPIKE_FED)
    for name, calls in seen.items():
        for slots in calls:  # one call per utterance
            assert slots.size(0) == 4
            assert all(int(s.sum()) > 0 for s in slots), name
            assert set(slots.unique().tolist()) <= {0.0, 1.0}, name
    thetas = {}
    original = events.scale_tokens

    def spy(acc, theta, bias, tally, name):
        thetas.setdefault(name, []).append(theta)
        return original(acc, theta, bias, tally, name)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(events, "scale_tokens", spy)
        _max_error(enc)
    assert sorted(thetas) == sorted(SCALED)
    for name, calls in thetas.items():
        assert all(len(set(t.flatten().tolist())) > 1 for t in calls), name


def _drop_last_slot(slots, read):
    return slots[:-1]


def _flip_one_event(slots, read):
    """Remove one event of the middle slot, the earliest in time among those the layer
    reads with a non-zero partner (``read``: where an event changes the output)."""
    slots = slots.clone()
    mid = slots[slots.size(0) // 2]
    idx = torch.nonzero(mid * read)
    if mid.dim() == 4:  # (B, C or H, T, F or d_head): time is dim 2
        idx = idx[idx[:, 2].argsort(stable=True)]
    mid[tuple(idx[0].tolist())] = 0.0
    return slots


def _double_first_slot(slots, read):
    """Every count-1 event counted twice (a slot fed twice)."""
    return torch.cat([slots[:1], slots])


def _read(fn, args):
    """Mask (broadcastable to one slot) of the input positions whose events change the
    output: a Q event needs a non-silent K channel, a V event a non-zero score column."""
    if fn == "event_matmul_left":  # slots @ K^T, K^T: (B, H, d_head, T)
        return (args[1] != 0).any(-1)[:, :, None, :]
    if fn == "event_matmul_right":  # A' @ slots, A': (B, H, T, T)
        return (args[0] != 0).any(-2)[..., None]
    return 1.0


@pytest.mark.parametrize("bug", [_drop_last_slot, _flip_one_event, _double_first_slot],
                         ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("layer", SPIKE_FED)
def test_wrong_slots_in_any_spike_fed_layer_is_caught(busy, layer, bug, monkeypatch):
    enc, _ = busy
    for fn in SLOT_FNS:
        original = getattr(events, fn)

        def wrapped(*args, _orig=original, _fn=fn, **kw):
            args = list(args)
            pos = 1 if _fn == "event_matmul_right" else 0
            name = args[4] if _fn == "event_conv_taps" else args[3]
            if name == layer:
                args[pos] = bug(args[pos], _read(_fn, args))
            return _orig(*args, **kw)

        monkeypatch.setattr(events, fn, wrapped)
    assert _max_error(enc) > 1e-6


@pytest.mark.parametrize("layer", SCALED)
def test_theta_of_the_wrong_token_is_caught(busy, layer, monkeypatch):
    enc, _ = busy
    original = events.scale_tokens

    def wrapped(acc, theta, bias, tally, name):
        if name == layer:
            theta = theta.roll(-1, dims=-2)
        return original(acc, theta, bias, tally, name)

    monkeypatch.setattr(events, "scale_tokens", wrapped)
    assert _max_error(enc) > 1e-6


def test_conv2_with_one_threshold_per_window_is_caught(busy, monkeypatch):
    """The old rule 'theta scales conv2's output once' (here with the window's centre
    frame) is wrong: the three frames of a window have three thresholds."""
    enc, _ = busy
    original = events.combine_taps

    def centre_only(partials, theta, bias, stride, tally, name):
        t_out = partials[0].size(2)
        centre = theta[:, :, 1 : 1 + stride * (t_out - 1) + 1 : stride]
        return original([sum(partials)], centre, bias, 1, tally, name)

    monkeypatch.setattr(events, "combine_taps", centre_only)
    assert _max_error(enc) > 1e-6


def test_missing_theta_is_caught(busy, monkeypatch):
    """(Scaling each slot by its own token's theta BEFORE accumulating is the same linear
    map as scaling the sum, not a bug; the wrong theta, or none, is.)"""
    enc, _ = busy
    original = events.scale_tokens

    def no_theta(acc, theta, bias, tally, name):
        return original(acc, torch.ones_like(theta), bias, tally, name)

    monkeypatch.setattr(events, "scale_tokens", no_theta)
    assert _max_error(enc) > 1e-6


def test_lif_encoder_gets_a_clear_error():
    # A T-step LIF encoder has no spike-driven form; the executor must say so and point to
    # the hooks, not fail inside with an AttributeError.
    enc = IMLSpikeformerEncoder(IDIM, **{**TINY, "neuron": "lif", "lif_timesteps": 2})
    with pytest.raises(ValueError, match="neuron: lif .*hooks_only"):
        spike_driven(enc)
