"""The mean spike count r of a module's spiking neurons over a forward pass, differentiable.

r is the number the energy report calls the neurons' mean spike count
(``mean_count_neurons`` in espnet_iml.energy): the spikes of every spiking neuron summed over
the valid (unpadded) positions, divided by the number of those positions, all neurons
pooled (a neuron layer with more positions weighs more). A position's count is S in [0, D]
for an IMLS neuron; for a T-step binary LIF neuron (``neuron: lif``) it is the number of
its T timesteps that fired, in [0, T].

Gradient (OUR DESIGN, for firing-rate-aware training, espnet_iml.model): the estimate the
IMLS neuron's own backward uses, S ~ U / theta inside 0 <= U / theta <= D and constant
outside, so dr/dU = 1 / theta and dr/dtheta = -U / theta^2 inside. The threshold, and
through it the learnable scale k, gets a gradient too: raising the threshold is the direct
way to fire less. For LIF spikes: the neuron's own sigmoid surrogate.

How the spikes reach the meter: an IMLS neuron carries a reference to its meter
(``IMLSNeuron.meter``) instead of a forward hook, because a hook turns the fused kernels of
espnet_iml.fused off (they compute norm and neuron in one function and would bypass it),
which made an encoder training step 1.29x as costly instead of 1.10x. The neuron's own
forward adds its counts (``add_imls``, from the S and theta it has just computed), and the
fused kernels add a spike sum whose backward carries the same gradient (``add``). A
multi-step LIF neuron is measured through a forward hook (it has no fused path).
"""

from typing import List, Optional, Union

import torch
from torch import nn

from espnet_iml.imls import IMLSNeuron
from espnet_iml.lif import MultiStepLIF

Neuron = Union[IMLSNeuron, MultiStepLIF]


def valid_positions(u: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Number of positions of ``u`` where ``mask`` (broadcastable to ``u``) is True."""
    if mask is None:
        return torch.tensor(float(u.numel()), device=u.device)
    return mask.to(torch.bool).expand(u.shape).sum().to(torch.float32)


def counts_with_ste(counts: torch.Tensor, theta: torch.Tensor, u: torch.Tensor,
                    mask: Optional[torch.Tensor], levels: int) -> torch.Tensor:
    """``counts`` (S of ``u`` at threshold ``theta``, theta differentiable) with the
    straight-through gradient of U / theta inside [0, D] (zero outside and where masked)."""
    x = u.to(theta.dtype) / theta
    inside = (x >= 0) & (x <= levels)
    if mask is not None:
        inside = inside & mask.to(torch.bool)
    return counts + (x - x.detach()) * inside.to(x.dtype)


def rate_loss(r: torch.Tensor, weight: float, target: float, mode: str = "target") -> torch.Tensor:
    """The rate loss of mean spike count ``r`` (OUR DESIGN): ``weight * (r - target)^2``
    (mode "target") or ``weight * max(0, r - target)^2`` (mode "ceiling": only a count
    above the target is penalized)."""
    d = r - target
    if mode == "ceiling":
        d = d.clamp_min(0.0)
    elif mode != "target":
        raise ValueError(f"rate mode must be 'target' or 'ceiling', got {mode!r}")
    return weight * d * d


class SpikeCountMeter:
    """Hooks the spiking neurons (IMLS or multi-step LIF) of ``module``; between ``start()``
    and ``stop()`` it sums their spikes and valid positions, ``stop()`` returns r.

    Args:
        module: the module whose neurons are measured (an encoder).
    """

    def __init__(self, module: nn.Module):
        self.neurons: List[Neuron] = [
            m for m in module.modules() if isinstance(m, (IMLSNeuron, MultiStepLIF))
        ]
        self.active = False
        self._spikes: Optional[torch.Tensor] = None
        self._valid: Optional[torch.Tensor] = None
        self._handles = []
        for m in self.neurons:
            if isinstance(m, IMLSNeuron):
                m.meter = self  # a neuron has one meter: a newer one replaces it
            else:
                self._handles.append(m.register_forward_hook(self._hook, with_kwargs=True))

    def max_count(self) -> int:
        """The largest count any measured neuron can emit at one position (D or T); 0 without
        neurons."""
        return max(
            (m.timesteps if isinstance(m, MultiStepLIF) else m.levels for m in self.neurons),
            default=0,
        )

    def start(self) -> None:
        self.active = True
        self._spikes = self._valid = None

    def stop(self) -> Optional[torch.Tensor]:
        """r of the forward passes since ``start()`` (None if no neuron ran)."""
        self.active = False
        if self._spikes is None:
            return None
        r = self._spikes / self._valid.clamp_min(1.0)
        self._spikes = self._valid = None
        return r

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        for m in self.neurons:
            if getattr(m, "meter", None) is self:
                m.meter = None

    def add(self, spikes: torch.Tensor, valid: torch.Tensor) -> None:
        """Add ``spikes`` (a differentiable spike sum) over ``valid`` positions."""
        self._spikes = spikes if self._spikes is None else self._spikes + spikes
        self._valid = valid if self._valid is None else self._valid + valid

    def add_imls(self, neuron: IMLSNeuron, u: torch.Tensor, mask: Optional[torch.Tensor],
                 counts: torch.Tensor, theta: torch.Tensor) -> None:
        """Add the counts an IMLS neuron has just fired from ``u`` at ``theta``."""
        self.add(counts_with_ste(counts, theta, u, mask, neuron.levels).sum(),
                 valid_positions(u, mask))

    def _hook(self, m: nn.Module, args, kwargs, out: torch.Tensor) -> None:
        if not self.active:
            return
        u = args[0] if args else kwargs["u"]
        mask = args[1] if len(args) > 1 else kwargs.get("mask")
        # out: binary spikes (T x B, ...), zero where masked; a position's count is its
        # sum over the T timesteps, so positions are the valid entries / T.
        self.add(out.float().sum(), valid_positions(u, mask) / m.timesteps)
