"""A standard multi-timestep binary LIF neuron, the baseline IMLS is meant to replace.

IML-Spikeformer's claim is that IMLS (several spikes in ONE timestep) avoids the training
cost of multi-timestep SNNs. To measure that, ``swap_imls_for_lif`` turns the same network
into a conventional T-step SNN: every IMLSNeuron becomes a ``MultiStepLIF`` and
``MultiStepEncoder`` repeats the input T times along the batch (direct encoding; layout
(T x B, ...), timestep-major) and averages the T outputs (rate decoding). Every synaptic
layer then processes T times as many rows, which is exactly where the cost of a T-step SNN
comes from.

The encoder option ``neuron: lif`` (with ``lif_timesteps: T``) builds the same T-step SNN
inside ``encoder: iml_spikeformer`` itself, so ESPnet trains it from a YAML switch (the
IMLS-against-LIF ablation, OUR option).

Neuron dynamics (leaky integrate-and-fire with input decay, hard reset, as in the LIF
neurons SNN toolkits ship, e.g. SpikingJelly's LIFNode defaults), per timestep t:

    H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau     charge
    S[t] = Heaviside(H[t] - V_th)                         fire (binary)
    V[t] = H[t] (1 - S[t]) + V_reset S[t]                 hard reset

with V[-1] = V_reset. Backward: the Heaviside's derivative is replaced by that of a
sigmoid of slope alpha, alpha sig(alpha x) (1 - sig(alpha x)) (surrogate gradient); the
reset path is not detached.
"""

from typing import Optional, Tuple

import torch
from torch import nn

from espnet2.asr.encoder.abs_encoder import AbsEncoder

from espnet_iml.imls import IMLSNeuron


class _SigmoidSurrogateSpike(torch.autograd.Function):
    """Heaviside(x) forward; d/dx sigmoid(alpha x) backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * sg * (1.0 - sg), None


def surrogate_spike(x: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    return _SigmoidSurrogateSpike.apply(x, alpha)


class MultiStepLIF(nn.Module):
    """Binary LIF neuron over T timesteps stored along dim 0 as (T x B, ...).

    Drop-in for IMLSNeuron inside the encoder: ``forward(u, mask)`` returns spikes in
    {0, 1} (zero where ``mask`` is False) and ``fire(u, mask)`` returns (spikes, 1).

    Args:
        timesteps: T.
        tau: membrane time constant (> 1; 2 is the usual default).
        v_threshold, v_reset: firing threshold and reset potential.
        alpha: slope of the sigmoid surrogate gradient.
    """

    def __init__(
        self,
        timesteps: int = 4,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        alpha: float = 4.0,
    ):
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        if tau <= 1.0:
            raise ValueError(f"tau must be > 1, got {tau}")
        self.timesteps = timesteps
        self.tau = tau
        self.v_threshold = v_threshold
        self.v_reset = v_reset
        self.alpha = alpha
        self.levels = 1  # binary spikes (for tools that read IMLSNeuron.levels)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, tau={self.tau}, v_threshold={self.v_threshold}"

    def forward(self, u: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        spikes, _ = self.fire(u, mask)
        return spikes

    def fire(
        self, u: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        t = self.timesteps
        if u.size(0) % t != 0:
            raise ValueError(
                f"MultiStepLIF: dim 0 ({u.size(0)}) must be timesteps ({t}) x batch"
            )
        with torch.autocast(device_type=u.device.type, enabled=False):
            x = u.float() if u.dtype in (torch.float16, torch.bfloat16) else u
            x = x.reshape(t, u.size(0) // t, *u.shape[1:])
            v = torch.full_like(x[0], self.v_reset)
            out = []
            for step in range(t):
                h = v + (x[step] - (v - self.v_reset)) / self.tau
                s = surrogate_spike(h - self.v_threshold, self.alpha)
                v = h * (1.0 - s) + self.v_reset * s
                out.append(s)
            spikes = torch.stack(out).reshape(u.shape)
            if mask is not None:
                spikes = spikes * mask.to(spikes.dtype)
        return spikes, torch.ones((), dtype=spikes.dtype, device=spikes.device)


def repeat_timesteps(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """(B, ...) -> (T x B, ...): the input of every timestep (direct encoding), timestep-major."""
    return x.repeat(timesteps, *([1] * (x.dim() - 1)))


def mean_timesteps(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """(T x B, ...) -> (B, ...): the mean over the T timesteps (rate decoding)."""
    return x.reshape(timesteps, x.size(0) // timesteps, *x.shape[1:]).mean(0)


def swap_imls_for_lif(module: nn.Module, timesteps: int = 4, **lif_kwargs) -> int:
    """Replace every IMLSNeuron inside ``module`` by a MultiStepLIF; returns how many."""
    n = 0
    for name, child in list(module.named_children()):
        if isinstance(child, IMLSNeuron):
            setattr(module, name, MultiStepLIF(timesteps, **lif_kwargs))
            n += 1
        else:
            n += swap_imls_for_lif(child, timesteps, **lif_kwargs)
    return n


class MultiStepEncoder(AbsEncoder):
    """Run an encoder as a T-step SNN: input repeated T times along the batch, outputs
    averaged over the T timesteps.

    Args:
        encoder: an encoder whose neurons are MultiStepLIF(timesteps) (see
            ``swap_imls_for_lif``); any ESPnet encoder works mechanically.
        timesteps: T.
    """

    def __init__(self, encoder: AbsEncoder, timesteps: int = 4):
        super().__init__()
        self.encoder = encoder
        self.timesteps = timesteps

    def output_size(self) -> int:
        return self.encoder.output_size()

    def forward(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor, prev_states: torch.Tensor = None
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        t, b = self.timesteps, xs_pad.size(0)
        out, olens, _ = self.encoder(repeat_timesteps(xs_pad, t), repeat_timesteps(ilens, t))
        if isinstance(out, tuple):  # intermediate CTC outputs: keep the final one
            out = out[0]
        return mean_timesteps(out, t), olens[:b], None


def lif_encoder(encoder: AbsEncoder, timesteps: int = 4, **lif_kwargs) -> MultiStepEncoder:
    """The same network as a T-step binary LIF SNN (modifies ``encoder`` in place)."""
    if swap_imls_for_lif(encoder, timesteps, **lif_kwargs) == 0:
        raise ValueError("the encoder has no IMLSNeuron to replace")
    return MultiStepEncoder(encoder, timesteps)
