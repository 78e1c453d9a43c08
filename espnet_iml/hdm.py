"""Hierarchical Decay Mask (HDM).

The paper names the mask and its purpose (multi-scale temporal dependencies). The form is
OUR DESIGN after RetNet's multi-scale retention: M[h, i, j] = gamma_h ** |i - j|, multiplied
into the attention scores. "Hierarchical" = the decay varies across heads within a layer and
across depth: lower layers decay fast (phonetic context, ~0.1-0.5 s at 40 ms frames), upper
layers slowly. RetNet's own gammas (1 - 2^(-5-h)) would span 1.3 s to 164 s, too slow for
the lower layers of a speech encoder.

Schedule: gamma = 1 - 2^-e, with e spread evenly over [e0, e0 + span] across heads and
e0 = low + (high - low) * layer / (num_layers - 1). With the defaults (low 1, high 3, span 3)
the lowest layer's heads have time constants 1/(1 - gamma) of 2 to 16 frames and the top
layer's 8 to 64 frames (measured to work in the spec's prototype).
"""

from typing import List

import torch


def decay_exponents(
    layer: int, num_layers: int, heads: int, low: float = 1.0, high: float = 3.0, span: float = 3.0
) -> List[float]:
    """Exponents e (gamma = 1 - 2^-e) of each head of ``layer`` (0-based)."""
    frac = layer / (num_layers - 1) if num_layers > 1 else 0.0
    e0 = low + (high - low) * frac
    if heads == 1:
        return [e0]
    return [e0 + span * h / (heads - 1) for h in range(heads)]


def decay_gammas(exponents: List[float]) -> torch.Tensor:
    return 1.0 - torch.pow(2.0, -torch.tensor(exponents, dtype=torch.float64))


def decay_mask(gammas: torch.Tensor, length: int, causal: bool = False) -> torch.Tensor:
    """(H, T, T) mask gamma_h^|i-j| (i = query, j = key); zero above the diagonal if causal."""
    pos = torch.arange(length, device=gammas.device)
    dist = (pos[:, None] - pos[None, :]).abs().to(gammas.dtype)
    mask = torch.exp(dist[None] * torch.log(gammas)[:, None, None])
    if causal:
        mask = mask * (pos[:, None] >= pos[None, :]).to(mask.dtype)
    return mask
