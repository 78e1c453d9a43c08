"""HD-RepSSA and the Hierarchical Decay Mask against references written out here: the
documented decay schedule head by head and layer by layer, and the attention output
against a hand-written ((Q K^T) * scale * M) V, with and without HDM, causal or not.
(Causality by perturbing future frames, with and without HDM: tests/test_encoder.py.)"""

import pytest
import torch

from espnet_iml.attention import HDRepSSA
from espnet_iml.encoder import IMLSpikeformerEncoder
from espnet_iml.hdm import decay_exponents
from test_encoder import _trained_like


def _documented_exponent(layer, layers, head, heads, low, high, span):
    """espnet_iml/hdm.py's docstring: e0 = low + (high - low) * layer / (layers - 1), and the
    heads spread evenly over [e0, e0 + span]."""
    e0 = low + (high - low) * (layer / (layers - 1) if layers > 1 else 0.0)
    return e0 + (span * head / (heads - 1) if heads > 1 else 0.0)


def test_decay_exponents_follow_the_documented_schedule():
    # defaults (low 1, high 3, span 3), 4 layers of 4 heads: e0 = 1, 5/3, 7/3, 3; heads +0..3
    assert decay_exponents(0, 4, 4) == [1.0, 2.0, 3.0, 4.0]
    assert decay_exponents(3, 4, 4) == [3.0, 4.0, 5.0, 6.0]
    for got, want in zip(decay_exponents(1, 4, 4), [5 / 3, 8 / 3, 11 / 3, 14 / 3]):
        assert got == pytest.approx(want, abs=1e-12)
    assert decay_exponents(2, 5, 3, low=0.5, high=2.5, span=1.0) == [1.5, 2.0, 2.5]
    assert decay_exponents(0, 1, 2, low=2.0, high=9.0, span=4.0) == [2.0, 6.0]  # one layer
    assert decay_exponents(3, 4, 1, low=1.0, high=4.0, span=7.0) == [4.0]  # one head


def test_every_block_gets_its_own_per_head_decays():
    """Layer l, head h of the encoder: gamma = 1 - 2^-e(l, h), each layer and each head its
    own (catches one decay for all heads, or layer 0's schedule copied to every block)."""
    low, high, span, layers, heads = 1.5, 4.0, 2.0, 3, 4
    enc = IMLSpikeformerEncoder(80, output_size=16, attention_heads=heads, linear_units=16,
                                num_blocks=layers, qkv_conv_kernel=3, hdm_low=low,
                                hdm_high=high, hdm_span=span)
    for layer, block in enumerate(enc.encoders):
        want = [1.0 - 2.0 ** -_documented_exponent(layer, layers, h, heads, low, high, span)
                for h in range(heads)]
        torch.testing.assert_close(block.attn.gammas, torch.tensor(want), rtol=1e-7, atol=0)
    # written out for the bottom and top blocks (e0 = 1.5 and 4.0; heads + 0, 2/3, 4/3, 2)
    assert enc.encoders[0].attn.gammas[0].item() == pytest.approx(1 - 2 ** -1.5, rel=1e-7)
    assert enc.encoders[2].attn.gammas[0].item() == pytest.approx(1 - 2 ** -4.0, rel=1e-7)
    assert enc.encoders[2].attn.gammas[3].item() == pytest.approx(1 - 2 ** -6.0, rel=1e-7)
    off = IMLSpikeformerEncoder(80, output_size=16, attention_heads=heads, linear_units=16,
                                num_blocks=2, hdm=False)
    assert all(b.attn.gammas is None for b in off.encoders)


def _capture(attn, s, mask):
    """Run ``attn`` and capture Q, K, V (the spiking neurons' outputs, (B, T, size)) and
    the context fed to the output neuron (what ((Q K^T) * scale * M) V must equal)."""
    got = {}
    hooks = [getattr(attn, f"{n}_neuron").register_forward_hook(
        lambda _m, _i, out, n=n: got.__setitem__(n, out.detach())) for n in "qkv"]
    hooks.append(attn.out_neuron.register_forward_pre_hook(
        lambda _m, args: got.__setitem__("ctx", args[0].detach())))
    with torch.no_grad():
        out = attn(s, mask)
    for h in hooks:
        h.remove()
    return got, out


def _reference_context(q, k, v, heads, scale, mask_of):
    """ctx[b, i, head h channels] = sum_j (Q_h[i] . K_h[j]) * scale_h * M_h(i, j) * V_h[j],
    as plain loops (no matmul, no broadcasting shortcuts)."""
    b, t, size = q.shape
    dh = size // heads
    ctx = torch.zeros(b, t, size, dtype=q.dtype)
    for n in range(b):
        for h in range(heads):
            sl = slice(h * dh, (h + 1) * dh)
            for i in range(t):
                for j in range(t):
                    score = float((q[n, i, sl] * k[n, j, sl]).sum()) * float(scale[h])
                    ctx[n, i, sl] += score * mask_of(h, i, j) * v[n, j, sl]
    return ctx


CASES = {
    "hdm": dict(decay_exponents=[1.0, 2.5], causal=False),
    "hdm_causal": dict(decay_exponents=[1.0, 2.5], causal=True),
    "plain": dict(decay_exponents=None, causal=False),
    "plain_causal": dict(decay_exponents=None, causal=True),
}


@pytest.mark.parametrize("case", CASES)
def test_attention_equals_hand_written_scores_times_mask_times_v(case):
    conf = CASES[case]
    exps, causal = conf["decay_exponents"], conf["causal"]
    torch.manual_seed(3)
    heads, t = 2, 7
    attn = HDRepSSA(8, heads, levels=4, qkv_conv_kernel=3, **conf).double()
    with torch.no_grad():
        attn.scale.copy_(torch.tensor([0.25, -0.5]))  # per-head, and not the init 1/d_head
    s = torch.randint(0, 5, (2, t, 8)).double()
    mask = torch.ones(2, t, 1, dtype=torch.bool)
    _trained_like(attn, s, mask)
    got, _ = _capture(attn, s, mask)
    q, k, v = got["q"], got["k"], got["v"]
    # the example must be able to tell Q from K and Q K^T from K Q^T
    assert not torch.equal(q, k)
    assert not torch.allclose(q[0, :, :4] @ k[0, :, :4].T, k[0, :, :4] @ q[0, :, :4].T)

    def mask_of(h, i, j):
        if causal and j > i:
            return 0.0
        if exps is None:
            return 1.0
        return (1.0 - 2.0 ** -exps[h]) ** abs(i - j)

    ref = _reference_context(q, k, v, heads, [0.25, -0.5], mask_of)
    # gammas are stored in float32: compare at that precision
    torch.testing.assert_close(got["ctx"], ref, rtol=1e-6, atol=1e-9)


def test_score_mask_is_cached_per_length_and_follows_the_decays():
    """The mask is kept for the last (length, device, dtype): equal-length calls reuse it,
    another length or new decay values (a loaded checkpoint) rebuild it."""
    from espnet_iml.hdm import decay_gammas, decay_mask

    attn = HDRepSSA(8, 2, decay_exponents=[1.0, 2.5], qkv_conv_kernel=3)
    m7 = attn.score_mask(7, torch.device("cpu"), torch.float32)
    assert attn.score_mask(7, torch.device("cpu"), torch.float32) is m7
    torch.testing.assert_close(m7, decay_mask(decay_gammas([1.0, 2.5]), 7).float())
    m9 = attn.score_mask(9, torch.device("cpu"), torch.float32)
    assert m9.shape == (2, 9, 9)
    assert attn.score_mask(9, torch.device("cpu"), torch.float64).dtype == torch.float64
    state = {k: v.clone() for k, v in attn.state_dict().items()}
    state["gammas"] = decay_gammas([2.0, 3.0]).float()
    attn.load_state_dict(state)
    torch.testing.assert_close(attn.score_mask(9, torch.device("cpu"), torch.float32),
                               decay_mask(decay_gammas([2.0, 3.0]), 9).float())
    causal = HDRepSSA(8, 2, decay_exponents=None, qkv_conv_kernel=3, causal=True)
    assert torch.equal(causal.score_mask(4, torch.device("cpu")), torch.ones(1, 4, 4).tril())
    assert HDRepSSA(8, 2, decay_exponents=None, qkv_conv_kernel=3).score_mask(4, "cpu") is None
