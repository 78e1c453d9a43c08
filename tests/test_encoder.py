"""Encoder behaviour users rely on: folded RepSSA == training form, causal masking,
padding invariance, clear config errors, strict state-dict round trip."""

import pytest
import torch

from espnet_iml.attention import HDRepSSA
from espnet_iml.encoder import IMLSpikeformerEncoder
from espnet_iml.hdm import decay_exponents, decay_gammas, decay_mask
from espnet_iml.norm import MaskedBatchNorm
from espnet_iml.rep import LinearBN, RepTemporalProjection

SMALL = dict(output_size=32, attention_heads=4, linear_units=64, num_blocks=2, qkv_conv_kernel=5)


def _trained_like(module, *inputs, steps=3):
    """Run a few training-mode forwards so BatchNorm running stats are not the identity,
    and randomize BN affine parameters, then switch to eval."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, MaskedBatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    module.train()
    with torch.no_grad():
        for _ in range(steps):
            module(*inputs)
    return module.eval()


def _set_fold(module, fold):
    for m in module.modules():
        if hasattr(m, "fold_in_eval"):
            m.fold_in_eval = fold


def _batch(b=3, t=90, seed=0, lengths=(90, 70, 52)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 80, generator=g, dtype=torch.float64), torch.tensor(lengths)


@pytest.mark.parametrize("causal", [False, True])
def test_rep_projection_folds_exactly(causal):
    torch.manual_seed(0)
    proj = RepTemporalProjection(8, 12, kernel_size=5, causal=causal).double()
    s = torch.randint(0, 5, (2, 20, 8)).double()
    mask = torch.ones(2, 20, 1, dtype=torch.bool)
    mask[1, 15:] = False
    _trained_like(proj, s, mask)
    _set_fold(proj, False)
    unfolded = proj(s, mask)
    _set_fold(proj, True)
    folded = proj(s, mask)
    torch.testing.assert_close(folded[mask.expand_as(folded)], unfolded[mask.expand_as(folded)])
    w, _ = proj.folded()
    assert w.shape == (12, 1, 5)  # one depthwise layer after folding


def test_linear_bn_folds_exactly():
    torch.manual_seed(0)
    layer = LinearBN(6, 4).double()
    x = torch.randn(3, 10, 6, dtype=torch.float64)
    _trained_like(layer, x)
    _set_fold(layer, False)
    ref = layer(x)
    _set_fold(layer, True)
    torch.testing.assert_close(layer(x), ref)


def test_folded_encoder_matches_training_form_in_eval():
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, **SMALL).double()
    x, lens = _batch()
    _trained_like(enc, x, lens)
    with torch.no_grad():
        _set_fold(enc, False)
        ref, olens, _ = enc(x, lens)
        _set_fold(enc, True)
        out, olens2, _ = enc(x, lens)
    assert torch.equal(olens, olens2)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("hdm", [True, False])
def test_causal_attention_ignores_future_frames(hdm):
    torch.manual_seed(0)
    attn = HDRepSSA(16, 2, decay_exponents=[1.0, 3.0] if hdm else None, qkv_conv_kernel=4,
                    causal=True).double()
    s = torch.randint(0, 5, (1, 30, 16)).double()
    mask = torch.ones(1, 30, 1, dtype=torch.bool)
    _trained_like(attn, s, mask)
    s2 = s.clone()
    s2[:, 20:] = torch.randint(0, 5, (1, 10, 16)).double()
    with torch.no_grad():
        a, b = attn(s, mask), attn(s2, mask)
    torch.testing.assert_close(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


@pytest.mark.parametrize("hdm", [True, False])
def test_causal_encoder_ignores_future_input(hdm):
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, **{**SMALL, "causal": True, "qkv_conv_kernel": 4},
                                hdm=hdm).double()
    x, lens = _batch(b=1, t=100, lengths=(100,))
    _trained_like(enc, x, lens)
    x2 = x.clone()
    x2[:, 60:] += torch.randn_like(x2[:, 60:])
    with torch.no_grad():
        a, _, _ = enc(x, lens)
        b, _, _ = enc(x2, lens)
    # output frame t sees input frames up to 4t + 6 through the two stride-2 convs
    keep = (60 - 7) // 4 + 1
    torch.testing.assert_close(a[:, :keep], b[:, :keep])
    assert not torch.allclose(a[:, keep + 2:], b[:, keep + 2:])


def test_bidirectional_decay_mask_is_symmetric_and_hierarchical():
    m = decay_mask(decay_gammas([1.0, 4.0]), 6)
    torch.testing.assert_close(m, m.transpose(1, 2))
    assert torch.all(m[:, range(6), range(6)] == 1)
    assert m[0, 0, 3] < m[1, 0, 3]  # head 0 decays faster
    low, high = decay_exponents(0, 12, 4), decay_exponents(11, 12, 4)
    assert low[0] < high[0] and low == sorted(low)
    causal = decay_mask(decay_gammas([2.0]), 5, causal=True)
    assert torch.all(causal[0].triu(1) == 0)


@pytest.mark.parametrize("norm, channels", [("batch", 0), ("layer", 0), ("batch", 8)])
def test_padded_batch_matches_each_utterance_alone(norm, channels):
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, **SMALL, branch_norm=norm, frontend_channels=channels)
    enc = enc.double()
    x, lens = _batch(lengths=(90, 70, 49))
    _trained_like(enc, x, lens)
    with torch.no_grad():
        batched, olens, _ = enc(x, lens)
        for i, n in enumerate(lens.tolist()):
            alone, olen, _ = enc(x[i:i + 1, :n], lens[i:i + 1])
            assert olen.item() == olens[i].item() == ((n - 1) // 2 - 1) // 2
            torch.testing.assert_close(batched[i, : olen.item()], alone[0])


def test_training_step_backpropagates_to_every_parameter():
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, **SMALL)
    x, lens = _batch()
    out, olens, _ = enc(x.float(), lens)
    loss = sum(out[i, :n].pow(2).mean() for i, n in enumerate(olens.tolist()))
    loss.backward()
    # A conv bias right before a BatchNorm that normalizes with the batch mean cancels:
    # its exact gradient is zero. The fused front end (espnet_iml.fused) gives exactly that;
    # the module path gives rounding noise. Every other parameter must get a gradient.
    before_bn = {"embed.conv1.bias", "embed.conv2.bias"}
    missing = [n for n, p in enc.named_parameters()
               if n not in before_bn and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []
    for n in before_bn:
        grad = dict(enc.named_parameters())[n].grad
        assert grad is not None and grad.abs().max() < 1e-3 * out.abs().mean()


@pytest.mark.parametrize(
    "conf, option",
    [
        (dict(spike_levels=0), "spike_levels"),
        (dict(output_size=30, attention_heads=4), "attention_heads"),
        (dict(spike_level=4), "spike_level'.*did you mean 'spike_levels'"),
        (dict(qkv_conv_kernel=4), "qkv_conv_kernel"),
        (dict(threshold="adaptive"), "threshold"),
        (dict(interctc_layer_idx=[5]), "interctc_layer_idx"),
        (dict(branch_norm="group"), "branch_norm"),
        (dict(frontend_channels=-1), "frontend_channels"),
    ],
)
def test_bad_config_names_the_option(conf, option):
    with pytest.raises(ValueError, match=option):
        IMLSpikeformerEncoder(80, **{**SMALL, **conf})


@pytest.mark.parametrize(
    "conf, message",
    [
        (dict(hdm_low=0.0), "hdm_low must be > 0"),
        (dict(hdm_low=-1.0), "hdm_low must be > 0"),
        (dict(hdm_low=float("nan")), "hdm_low must be a finite number"),
        (dict(hdm_high=float("inf")), "hdm_high must be a finite number"),
        (dict(hdm_span=-1.0), "hdm_span must be >= 0"),
        (dict(hdm_span=-0.5), "hdm_span must be >= 0"),
        (dict(hdm_low=3.0, hdm_high=1.0), r"hdm_low \(3.0\) must be <= hdm_high \(1.0\)"),
        (dict(linear_units=0), "linear_units must be >= 1"),
        (dict(output_size=0), "output_size must be >= 1"),
        (dict(output_size=-4), "output_size must be >= 1"),
        (dict(threshold_init=0.0), "threshold_init must be a finite number > 0"),
        (dict(threshold_init=float("nan")), "threshold_init must be a finite number > 0"),
    ],
)
def test_options_that_would_give_nan_or_crash_are_rejected_by_name(conf, message):
    """Each of these used to turn every output into NaN or crash deep inside (issue 12)."""
    with pytest.raises(ValueError, match="iml_spikeformer encoder_conf: " + message):
        IMLSpikeformerEncoder(80, **{**SMALL, **conf})


@pytest.mark.parametrize(
    "conf",
    [dict(hdm_low=2.0, hdm_high=2.0, hdm_span=0.0), dict(hdm_low=0.25, hdm_span=0.0),
     dict(hdm=False, causal=True, qkv_conv_kernel=4)],
)
def test_boundary_options_are_accepted_and_finite(conf):
    enc = IMLSpikeformerEncoder(80, **{**SMALL, **conf})
    out, _, _ = enc(torch.randn(2, 40, 80), torch.tensor([40, 30]))
    assert torch.isfinite(out).all()


def test_attention_rejects_non_positive_decay_exponents():
    with pytest.raises(ValueError, match="decay exponents must be > 0"):
        HDRepSSA(8, 2, decay_exponents=[1.0, 0.0])


def test_too_short_input_raises_espnet_error():
    from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError

    enc = IMLSpikeformerEncoder(80, **SMALL)
    with pytest.raises(TooShortUttError):
        enc(torch.randn(1, 6, 80), torch.tensor([6]))


def test_state_dict_round_trip_is_strict(tmp_path):
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, **SMALL)
    torch.save(enc.state_dict(), tmp_path / "enc.pth")
    torch.manual_seed(1)
    other = IMLSpikeformerEncoder(80, **SMALL)
    result = other.load_state_dict(torch.load(tmp_path / "enc.pth"), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x, lens = _batch()
    enc.eval(), other.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(x.float(), lens)[0], other(x.float(), lens)[0])


def test_real_valued_frontend_option():
    enc = IMLSpikeformerEncoder(80, **SMALL, spiking_frontend=False)
    assert not hasattr(enc.embed, "neuron1")
    out, olens, _ = enc(torch.randn(2, 40, 80), torch.tensor([40, 30]))
    assert out.shape == (2, 9, 32) and olens.tolist() == [9, 6]


def test_frontend_channels_sets_both_convs_and_the_projection():
    enc = IMLSpikeformerEncoder(80, **SMALL, frontend_channels=8)
    # conv1: 1 -> 8, conv2: 8 -> 8, projection: 8 channels x 19 frequency bins -> d
    assert enc.embed.conv1.weight.shape == (8, 1, 3, 3)
    assert enc.embed.conv2.weight.shape == (8, 8, 3, 3)
    assert enc.embed.out.weight.shape == (32, 8 * 19)
    assert enc.embed.bn1.num_features == enc.embed.bn2.num_features == 8
    default = IMLSpikeformerEncoder(80, **SMALL)
    assert default.embed.conv2.weight.shape == (32, 32, 3, 3)
