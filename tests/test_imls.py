"""IMLS neuron: counts equal an explicit D-step integrate-and-fire simulation, the STE
gradient lives only in the firing range, and spike-driven (binary slot) evaluation of a
synaptic layer equals the integer-count evaluation."""

import pytest
import torch

from espnet_iml.imls import (
    IMLSNeuron,
    binary_slot_linear,
    expand_binary,
    if_reference,
    spike_count,
)


@pytest.mark.parametrize("levels", [1, 2, 4, 8])
def test_counts_equal_d_step_integrate_and_fire(levels):
    g = torch.Generator().manual_seed(levels)
    x = torch.randn(4096, generator=g) * levels + levels / 2
    # exact half-integers are where rounding conventions disagree: include them
    x = torch.cat([x, torch.arange(-1.0, levels + 1.5, 0.5)])
    counts = spike_count(x, levels)
    ref = if_reference(x, levels)
    assert torch.equal(counts, ref)
    assert counts.min() == 0 and counts.max() == levels
    assert torch.equal(counts, counts.round())


@pytest.mark.parametrize("levels", [1, 4])
def test_neuron_counts_match_reference_with_its_own_threshold(levels):
    neuron = IMLSNeuron(levels=levels, threshold_init=0.7)
    u = torch.randn(3, 50, 16, generator=torch.Generator().manual_seed(1))
    counts, theta = neuron.fire(u)
    assert theta.shape == (3, 50, 1)
    torch.testing.assert_close(theta, 0.7 * u.abs().mean(-1, keepdim=True))
    assert torch.equal(counts, if_reference(u / theta, levels))
    assert torch.equal(neuron(u), counts * theta)


def test_gradient_only_inside_firing_range():
    levels = 4
    x = torch.linspace(-3, levels + 3, 1001, requires_grad=True)
    spike_count(x, levels).sum().backward()
    inside = (x.detach() >= 0) & (x.detach() <= levels)
    assert torch.all(x.grad[inside] == 1)
    assert torch.all(x.grad[~inside] == 0)


def test_constant_threshold_gradient_zero_outside_range():
    neuron = IMLSNeuron(levels=2, threshold="constant", threshold_init=1.0)
    u = torch.tensor([-2.0, -0.1, 0.3, 1.0, 1.9, 2.6, 5.0], requires_grad=True)
    neuron(u).sum().backward()
    assert u.grad.tolist() == [0, 0, 1, 1, 1, 0, 0]


def test_mask_silences_padded_positions():
    neuron = IMLSNeuron(levels=4)
    u = torch.rand(2, 6, 8) + 1.0
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)[..., None]
    out = neuron(u, mask)
    assert torch.all(out[0, 4:] == 0) and torch.all(out[0, :4] > 0)


@pytest.mark.parametrize("levels", [1, 3, 4])
def test_binary_slots_reproduce_layer_on_integer_spikes(levels):
    torch.manual_seed(levels)
    layer = torch.nn.Linear(16, 8).double()
    neuron = IMLSNeuron(levels=levels)
    u = torch.randn(5, 7, 16, dtype=torch.float64)
    counts, theta = neuron.fire(u)
    slots = expand_binary(counts, levels)
    assert slots.shape == (levels, 5, 7, 16)
    assert set(slots.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(slots.sum(0), counts)
    expected = layer(counts * theta)
    got = binary_slot_linear(layer, slots, theta)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # adding the bias once per slot would be wrong by (D - 1) * bias
    wrong = sum(layer(s) for s in slots) * theta
    assert not torch.allclose(wrong, expected)


def test_bad_neuron_settings_name_the_option():
    with pytest.raises(ValueError, match="spike_levels"):
        IMLSNeuron(levels=0)
    with pytest.raises(ValueError, match="threshold must be one of"):
        IMLSNeuron(threshold="adaptive")


def _composed_reference(u, k, levels, dims, eps, mask):
    """The same neuron written as plain differentiable ops (autograd does the gradient)."""
    if dims is None:
        theta = k.abs().clamp_min(eps)
    else:
        theta = (k.abs() * u.abs().mean(dim=dims, keepdim=True)).clamp_min(eps)
    counts = spike_count(u / theta, levels) * mask
    return counts * theta


@pytest.mark.parametrize("threshold, dims", [("input_aware", (-1,)), ("input_aware", (1, 3)),
                                             ("constant", None)])
def test_fused_neuron_matches_composed_autograd(threshold, dims):
    torch.manual_seed(0)
    shape = (2, 3, 7, 5) if dims == (1, 3) else (2, 7, 6)
    u1 = (torch.randn(*shape, dtype=torch.float64) * 2).requires_grad_()
    u2 = u1.detach().clone().requires_grad_()
    mask = torch.ones(*shape[:-1], 1, dtype=torch.bool)
    mask[1, ..., -2:, :] = False
    neuron = IMLSNeuron(levels=3, threshold=threshold, threshold_init=0.8,
                        reduce_dims=dims or (-1,)).double()
    k2 = neuron.k.detach().clone().requires_grad_()
    g = torch.randn(*shape, dtype=torch.float64)
    (neuron(u1, mask) * g).sum().backward()
    (_composed_reference(u2, k2, 3, dims, neuron.eps, mask.double()) * g).sum().backward()
    torch.testing.assert_close(u1.grad, u2.grad)
    torch.testing.assert_close(neuron.k.grad, k2.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_neuron_rounds_half_up_and_saturates_at_d(dtype):
    """The neuron the model runs (IMLSNeuron -> _IMLSFire), not the spike_count helper.

    Reference, written out: S = floor(U / theta + 1/2) clipped to [0, D], i.e. exact halves
    round UP (1.5 -> 2, 2.5 -> 3; round-half-to-even would give 2 and 2), and every input at
    or above D - 1/2 thresholds fires exactly D spikes.
    """
    levels = 4
    # constant threshold theta = |k| = 0.5 (exact in binary): U / theta = 2U
    const = IMLSNeuron(levels=levels, threshold="constant", threshold_init=0.5).to(dtype)
    x = torch.tensor([-0.5, 0.0, 0.25, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 100.0], dtype=dtype)
    expected = torch.tensor([0, 0, 0, 1, 2, 3, 4, 4, 4, 4], dtype=dtype)
    counts, theta = const.fire(x / 2)
    assert torch.equal(theta.reshape(()), torch.tensor(0.5, dtype=dtype))
    assert torch.equal(counts, expected)
    assert torch.equal(const(x / 2), expected * 0.5)

    # input-aware threshold: each row's mean |U| is 4 and k = 0.5, so theta = 2 exactly and
    # U / theta is 0.5, 1.5, 2.5, 3.5 / 4.5 (and saturation at 40 / 2 = 20 >> D)
    aware = IMLSNeuron(levels=levels, threshold="input_aware", threshold_init=0.5).to(dtype)
    u = torch.tensor([[1.0, 3.0, 5.0, 7.0], [9.0, -3.0, 2.0, 2.0], [0.0, 0.0, 0.0, 16.0]],
                     dtype=dtype)
    counts, theta = aware.fire(u)
    assert torch.equal(theta, torch.full((3, 1), 2.0, dtype=dtype))
    assert torch.equal(counts, torch.tensor([[1, 2, 3, 4], [4, 0, 1, 1], [0, 0, 0, 4]],
                                            dtype=dtype))
    assert torch.equal(aware(u), counts * 2.0)


@pytest.mark.parametrize("threshold", ["input_aware", "constant"])
def test_threshold_returned_by_fire_carries_its_gradient(threshold):
    """fire() returns theta; a loss on it (and on counts * theta) must get the gradient of
    theta = |k| * mean|U| (or |k|) written out here with autograd, counts held constant."""
    torch.manual_seed(0)
    u1 = (torch.randn(3, 5, 6, dtype=torch.float64) * 2).requires_grad_()
    u2 = u1.detach().clone().requires_grad_()
    neuron = IMLSNeuron(levels=3, threshold=threshold, threshold_init=0.7).double()
    k2 = neuron.k.detach().clone().requires_grad_()
    counts, theta = neuron.fire(u1)
    g = torch.randn_like(counts)
    h = torch.randn_like(theta)
    ((counts * theta * g).sum() + (theta * h).sum()).backward()
    if threshold == "constant":
        theta_ref = k2.abs().reshape(1, 1, 1)
    else:
        theta_ref = k2.abs() * u2.abs().mean(-1, keepdim=True)
    ((counts * theta_ref * g).sum() + (theta_ref * h).sum()).backward()
    torch.testing.assert_close(neuron.k.grad, k2.grad)
    if threshold == "input_aware":
        torch.testing.assert_close(u1.grad, u2.grad)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_neuron_rejects_bad_threshold_init(value):
    with pytest.raises(ValueError, match="threshold_init must be a finite number > 0"):
        IMLSNeuron(threshold_init=value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_at_the_exact_edges_of_the_firing_range(dtype):
    """The firing range 0 <= U/theta <= D is closed: U/theta exactly 0 or exactly D passes
    the gradient, the nearest floats outside do not (theta = 0.5, D = 4, so U/theta = 2U)."""
    neuron = IMLSNeuron(levels=4, threshold="constant", threshold_init=0.5).to(dtype)
    just_above = torch.nextafter(torch.tensor(2.0, dtype=dtype), torch.tensor(3.0, dtype=dtype))
    just_below = torch.nextafter(torch.tensor(0.0, dtype=dtype), torch.tensor(-1.0, dtype=dtype))
    u = torch.stack([torch.tensor(0.0, dtype=dtype), torch.tensor(2.0, dtype=dtype),
                     just_above, just_below]).requires_grad_()
    neuron(u).sum().backward()
    assert u.grad.tolist() == [1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("dims", [(1, 3), (-2, -1), (-1,)])
def test_abs_sum_slice_by_slice_equals_the_direct_sum(dims):
    from espnet_iml.imls import abs_sum

    u = torch.randn(5, 6, 7, 8, dtype=torch.float64)
    want = u.abs().sum(dims, keepdim=True)
    torch.testing.assert_close(abs_sum(u, dims, chunk=10), want, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(abs_sum(u, dims), want, rtol=1e-13, atol=1e-13)


def test_in_place_gradient_slice_by_slice_equals_whole_tensor():
    """The slice-by-slice (large map) path of the IMLS backward gives the same gradient as
    the whole-tensor path, which the composed-autograd tests above check."""
    from espnet_iml.imls import _imls_grad_in_place, firing_bounds, imls_threshold

    g = torch.Generator().manual_seed(4)
    u = torch.randn(4, 6, 5, 7, generator=g, dtype=torch.float64) * 2
    gy = torch.randn(4, 6, 5, 7, generator=g, dtype=torch.float64)
    k = torch.tensor(0.8, dtype=torch.float64)
    theta, mean_abs = imls_threshold(u, k, (-2, -1), 1e-4)
    lo, hi = firing_bounds(torch.float64, 3)
    whole = _imls_grad_in_place(u / theta, gy, theta, mean_abs, k, 3, (2, 3), 1e-4, lo, hi)
    sliced = _imls_grad_in_place(u / theta, gy, theta, mean_abs, k, 3, (2, 3), 1e-4, lo, hi,
                                 chunk=10)
    torch.testing.assert_close(sliced[0], whole[0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(sliced[1], whole[1], rtol=1e-13, atol=1e-13)
