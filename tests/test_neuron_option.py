"""``neuron: lif`` (OUR ablation option): the encoder as a T-step binary LIF SNN from YAML.

Reference: the same network turned into a T-step SNN by espnet_iml.lif.lif_encoder (tested
in tests/test_benchmark.py), built from the same seed, must give the same output."""

import pytest
import torch

from espnet_iml.encoder import IMLSpikeformerEncoder
from espnet_iml.imls import IMLSNeuron
from espnet_iml.lif import MultiStepLIF, lif_encoder

SMALL = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2,
             qkv_conv_kernel=3, frontend_channels=8)


def _pair(timesteps: int, **extra):
    torch.manual_seed(0)
    ref = lif_encoder(IMLSpikeformerEncoder(80, **SMALL, **extra), timesteps)
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, **SMALL, **extra, neuron="lif", lif_timesteps=timesteps)
    return ref, enc


@pytest.mark.parametrize("timesteps", [1, 3])
def test_lif_option_equals_the_lif_wrapper(timesteps):
    ref, enc = _pair(timesteps, dropout_rate=0.0)
    n_imls = len(IMLSpikeformerEncoder(80, **SMALL).neurons())
    assert not any(isinstance(m, IMLSNeuron) for m in enc.modules())
    lifs = [m for m in enc.modules() if isinstance(m, MultiStepLIF)]
    assert len(lifs) == n_imls and all(m.timesteps == timesteps for m in lifs)
    assert enc.timesteps == timesteps
    xs, lens = torch.randn(3, 40, 80), torch.tensor([40, 33, 21])
    for train in (True, False):
        ref.train(train)
        enc.train(train)
        out, olens, _ = enc(xs, lens)
        want, want_lens, _ = ref(xs, lens)
        assert out.shape == (3, 9, 16)
        assert torch.equal(olens, want_lens) and olens.tolist() == [9, 7, 4]
        torch.testing.assert_close(out, want, rtol=0, atol=0)


def test_lif_gradients_reach_the_front_end_and_intermediate_outputs_are_averaged():
    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, **{**SMALL, "num_blocks": 3}, interctc_layer_idx=[1],
                                neuron="lif", lif_timesteps=2)
    (out, inter), olens, _ = enc(torch.randn(2, 30, 80), torch.tensor([30, 20]))
    assert out.shape == (2, 6, 16) and inter[0][0] == 1 and inter[0][1].shape == (2, 6, 16)
    out.sum().backward()
    assert enc.embed.conv1.weight.grad.abs().sum() > 0


def test_imls_is_the_default_and_one_timestep():
    enc = IMLSpikeformerEncoder(80, **SMALL)
    assert enc.timesteps == 1 and len(enc.neurons()) > 0
    assert not any(isinstance(m, MultiStepLIF) for m in enc.modules())


@pytest.mark.parametrize("opts, message", [
    (dict(neuron="LIF"), "neuron must be one of ('imls', 'lif') (got 'LIF')"),
    (dict(neuron="lif", lif_timesteps=0), "lif_timesteps must be >= 1 (got 0)"),
    (dict(lif_timesteps=-1), "lif_timesteps must be >= 1 (got -1)"),
    (dict(lif_timestep=4), "'lif_timestep' (did you mean 'lif_timesteps'?)"),
])
def test_bad_values_name_the_option(opts, message):
    with pytest.raises(ValueError) as err:
        IMLSpikeformerEncoder(80, **SMALL, **opts)
    assert message in str(err.value) and "iml_spikeformer encoder_conf" in str(err.value)
