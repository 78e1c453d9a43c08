"""Encoder edges the mutation run (docs/mutation.md) found untested: the shortest input, a
single block, intermediate CTC outputs and self-conditioning, and the defaults that the
shipped configs rely on (they leave these options out)."""

import pytest
import torch

from espnet_iml.encoder import IMLSpikeformerEncoder
from espnet_iml.norm import MaskedBatchNorm

SMALL = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2, qkv_conv_kernel=3)


def test_seven_frames_are_the_shortest_input():
    """Two kernel-3 stride-2 convs: 7 input frames give ((7 - 1) // 2 - 1) // 2 = 1 frame; 6
    raise ESPnet's TooShortUttError carrying the size and the limit."""
    from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError

    enc = IMLSpikeformerEncoder(80, **SMALL).eval()
    out, olens, _ = enc(torch.randn(1, 7, 80), torch.tensor([7]))
    assert out.shape == (1, 1, 16) and olens.tolist() == [1]
    with pytest.raises(TooShortUttError) as err:
        enc(torch.randn(2, 6, 80), torch.tensor([6, 5]))
    assert (err.value.actual_size, err.value.limit) == (6, 7)


def test_one_block_and_one_head_are_allowed_zero_is_not():
    enc = IMLSpikeformerEncoder(80, **{**SMALL, "num_blocks": 1, "attention_heads": 1})
    assert len(enc.encoders) == 1 and enc.encoders[0].attn.heads == 1
    out, _, _ = enc(torch.randn(1, 20, 80), torch.tensor([20]))
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="num_blocks must be >= 1"):
        IMLSpikeformerEncoder(80, **{**SMALL, "num_blocks": 0})
    with pytest.raises(ValueError, match="attention_heads must be >= 1"):
        IMLSpikeformerEncoder(80, **{**SMALL, "attention_heads": 0})


class _StubCTC:
    """ESPnet's CTC interface as the encoder uses it: softmax(hidden) -> posteriors."""

    def __init__(self, size: int, vocab: int):
        self.proj = torch.nn.Linear(size, vocab).double()

    def softmax(self, h):
        return torch.softmax(self.proj(h), dim=-1)


@pytest.mark.parametrize("conditioning", [False, True])
def test_intermediate_ctc_outputs_are_the_normed_block_outputs(conditioning):
    """interctc_layer_idx (1-based): block k's output through after_norm; with conditioning
    the next block reads x + conditioning_layer(ctc.softmax(that))."""
    torch.manual_seed(0)
    # without conditioning (the default) no CTC module is needed
    extra = dict(interctc_use_conditioning=True) if conditioning else {}
    enc = IMLSpikeformerEncoder(80, **{**SMALL, "num_blocks": 3}, interctc_layer_idx=[1, 2],
                                **extra).double().eval()
    ctc = _StubCTC(16, 5) if conditioning else None
    if conditioning:
        enc.conditioning_layer = torch.nn.Linear(5, 16).double()
    x, lens = torch.randn(2, 30, 80, dtype=torch.float64), torch.tensor([30, 24])
    with torch.no_grad():
        (final, inter), olens, _ = enc(x, lens, ctc=ctc)
        # the same computation written out block by block
        h, ref_lens = enc.embed(x, lens)
        mask = (torch.arange(h.size(1))[None] < ref_lens[:, None])[..., None]
        want = []
        for k, block in enumerate(enc.encoders, start=1):
            h = block(h, mask)
            if k in (1, 2):
                want.append((k, enc.after_norm(h)))
                if conditioning:
                    h = h + enc.conditioning_layer(ctc.softmax(want[-1][1]))
    assert olens.tolist() == ref_lens.tolist()
    assert [k for k, _ in inter] == [1, 2]
    for (_, got), (_, ref) in zip(inter, want):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final, enc.after_norm(h), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(inter[0][1], inter[1][1])


def test_defaults_that_shipped_configs_rely_on():
    """conf/ and egs2/ leave these options out, so their defaults are part of every shipped
    model: input-aware threshold with k = 1, D = 4, masked BatchNorm before each branch, the
    spiking front end, bidirectional HDM whose time constants 1/(1 - gamma) = 2^e run from
    2-16 frames (bottom block) to 8-64 frames (top block), as espnet_iml/hdm.py documents."""
    enc = IMLSpikeformerEncoder(80, output_size=16, attention_heads=4, linear_units=16)
    assert len(enc.encoders) == 12
    neurons = enc.neurons()
    assert all(n.threshold == "input_aware" and n.k.item() == 1.0 and n.levels == 4
               for n in neurons)
    assert hasattr(enc.embed, "neuron1")
    block = enc.encoders[0]
    assert isinstance(block.attn_norm, MaskedBatchNorm) and isinstance(block.ffn.norm,
                                                                       MaskedBatchNorm)
    assert not block.attn.causal and block.attn.qkv.kernel_size == 15
    for layer, want in ((0, [2.0, 4.0, 8.0, 16.0]), (11, [8.0, 16.0, 32.0, 64.0])):
        gammas = enc.encoders[layer].attn.gammas.double()
        torch.testing.assert_close(1.0 / (1.0 - gammas), torch.tensor(want, dtype=torch.float64),
                                   rtol=1e-6, atol=0)
    # the learnable per-head attention scale starts at 1 / d_head
    assert torch.equal(block.attn.scale.detach(), torch.full((4,), 1.0 / 4))
