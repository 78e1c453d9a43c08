"""The element-wise work around the synaptic layers, as the energy counter models it:
norms, the attention scale and decay mask, residual adds, and the ANN baselines'
activations.

Each ``*_ops`` function takes one forward call of a module (module, args, kwargs, output)
and returns the operations it performs: ``(name suffix, kind, multiplies, adds)``. The
counter (``espnet_iml.energy.counting``) records them under the module's name; the ANN
twin does the same work (only neurons differ between the two, and the counter prices
those itself). Padded positions are counted as run.
"""

from typing import Callable, List, Optional, Tuple

from torch import nn

from espnet_iml.attention import HDRepSSA
from espnet_iml.block import SpikingBlock
from espnet_iml.norm import MaskedBatchNorm
from espnet_iml.subsampling import SpikingConv2dSubsampling

Op = Tuple[str, str, float, float]  # (name suffix, kind, multiplies, adds)


def batchnorm_ops(m, args, kwargs, out) -> List[Op]:
    # inference BatchNorm is one affine map per element
    n = out.numel()
    return [("", "norm (BatchNorm affine)", n, n)]


def layernorm_ops(m, args, kwargs, out) -> List[Op]:
    # mean and variance (2 adds, 1 multiply an element), normalize (1 add, 1 multiply),
    # affine (1 add, 1 multiply)
    n = out.numel()
    return [("", "norm (LayerNorm)", 3 * n, 4 * n)]


def ssa_ops(m: HDRepSSA, args, kwargs, out) -> List[Op]:
    # one multiply a score for the scale, and one more for the decay mask when it applies
    s = args[0] if args else kwargs["s"]
    b, t, _ = s.shape
    scores = b * m.heads * t * t
    ops = [(".scale", "attention scale", scores, 0.0)]
    if m.gammas is not None or m.causal:
        ops.append((".decay_mask", "decay mask", scores, 0.0))
    return ops


def residual_ops(m, args, kwargs, out) -> List[Op]:
    # a block adds each of its two branches back onto the stream
    return [(".residual", "residual add", 0.0, 2 * out.numel())]


def subsampling_ops(m: SpikingConv2dSubsampling, args, kwargs, out) -> List[Op]:
    if m.spiking:  # its neurons are counted as neurons
        return []
    # the real front end's two ReLUs are functional inside the module: no hook sees them
    c = m.conv2.out_channels
    f = m.out.in_features
    x = args[0] if args else kwargs["xs"]
    t1 = (x.size(1) - 1) // 2
    f1 = (x.size(2) - 1) // 2
    relu = x.size(0) * c * t1 * f1 + out[0].size(0) * out[0].size(1) * f
    return [(".relu", "activation", 0.0, relu)]


def activation_ops(m, args, kwargs, out) -> List[Op]:
    # a ReLU is one comparison; a smooth activation about 3 multiplies and an add
    n = out.numel()
    if isinstance(m, nn.ReLU):
        return [("", "activation", 0.0, n)]
    return [("", "activation", 3 * n, n)]


_BY_TYPE = (
    (MaskedBatchNorm, batchnorm_ops),
    (nn.LayerNorm, layernorm_ops),
    (HDRepSSA, ssa_ops),
    (SpikingBlock, residual_ops),
    (SpikingConv2dSubsampling, subsampling_ops),
    ((nn.ReLU, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid), activation_ops),
)


def elementwise_ops_of(m: nn.Module) -> Optional[Callable[..., List[Op]]]:
    """The ``*_ops`` function for ``m``'s type, or None when it does no modelled
    element-wise work."""
    return next((fn for types, fn in _BY_TYPE if isinstance(m, types)), None)
