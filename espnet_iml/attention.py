"""HD-RepSSA: re-parameterized spiking self-attention with a Hierarchical Decay Mask.

Paper: RepSSA + HDM = HD-RepSSA. The concrete form is OUR DESIGN (Spikformer's SSA with a
RepConv-style Q/K/V generator, measured in the spec's prototype):

    [q k v] = RepTemporalProjection(S)          (pointwise on spikes + temporal branches)
    Q, K, V = IMLS(q), IMLS(k), IMLS(v)         (multi-level spikes; padded keys silent)
    A       = (Q K^T) * scale_h * HDM_h         (integer products, no softmax)
    out     = LinearBN(IMLS(A V))               (spiked, then projected)

The per-head scale is a scalar per head, so it is applied to (Q K^T * HDM) V, after the
second product: (B, H, T, d_head) values instead of the (B, H, T, T) score map, the same
result (ours, issue 13: one pass less over the score map in forward and in backward). The
mask is cached for the last (length, device, dtype).

No softmax: scores are sums of spike-count products, so the whole block stays
multiplication-free apart from the per-token scales and the decay mask.
"""

from typing import List, Optional

import torch
from torch import nn

from espnet_iml.hdm import decay_gammas, decay_mask
from espnet_iml.imls import IMLSNeuron
from espnet_iml.rep import LinearBN, RepTemporalProjection


class MatMul(nn.Module):
    """``a @ b`` as a module, so profilers can hook the spike-spike products."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class HDRepSSA(nn.Module):
    """Spiking self-attention over spike input.

    Args:
        size: model width.
        heads: number of heads (must divide size).
        levels: D of every IMLS neuron inside.
        decay_exponents: per-head e (gamma = 1 - 2^-e); None disables the decay mask.
        qkv_conv_kernel: temporal kernel of the Q/K/V generator's conv branch (0 = none).
        causal: attend to past and present frames only (streaming).
        threshold, threshold_init: IMLS threshold mode and initial scale.
    """

    def __init__(
        self,
        size: int,
        heads: int,
        levels: int = 4,
        decay_exponents: Optional[List[float]] = None,
        qkv_conv_kernel: int = 15,
        causal: bool = False,
        threshold: str = "input_aware",
        threshold_init: float = 1.0,
    ):
        super().__init__()
        if size % heads != 0:
            raise ValueError(
                f"output_size ({size}) must be divisible by attention_heads ({heads})"
            )
        if decay_exponents is not None and len(decay_exponents) != heads:
            raise ValueError(f"need one decay exponent per head ({heads}), got {decay_exponents}")
        if decay_exponents is not None and not all(e > 0 for e in decay_exponents):
            # gamma = 1 - 2^-e <= 0 for e <= 0: its log (in decay_mask) is NaN
            raise ValueError(f"decay exponents must be > 0, got {decay_exponents}")
        self.size, self.heads, self.d_head = size, heads, size // heads
        self.causal = causal
        self.qkv = RepTemporalProjection(size, 3 * size, qkv_conv_kernel, causal)
        neuron = dict(levels=levels, threshold=threshold, threshold_init=threshold_init)
        self.q_neuron = IMLSNeuron(**neuron)
        self.k_neuron = IMLSNeuron(**neuron)
        self.v_neuron = IMLSNeuron(**neuron)
        self.out_neuron = IMLSNeuron(**neuron)
        self.qk = MatMul()
        self.av = MatMul()
        # Learnable per-head scale; 1/d_head keeps the first updates of Q K^T V moderate.
        self.scale = nn.Parameter(torch.full((heads,), 1.0 / self.d_head))
        if decay_exponents is not None:
            self.register_buffer("gammas", decay_gammas(decay_exponents).float())
        else:
            self.gammas = None
        self.out = LinearBN(size, size)
        self._mask_cache: Optional[tuple] = None  # (key, mask); not state

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.d_head).transpose(1, 2)

    def score_mask(
        self, length: int, device: torch.device, dtype: Optional[torch.dtype] = None
    ) -> Optional[torch.Tensor]:
        """(H, T, T) multiplicative mask: decay (if on) and causality (if on). The last one
        built is kept (per length, device, dtype and decay values), so that equal-length
        calls (inference, fixed-size batches) do not rebuild it; treat it as read-only."""
        if self.gammas is None and not self.causal:
            return None
        dtype = dtype or (self.gammas.dtype if self.gammas is not None else torch.float32)
        gam = self.gammas
        key = (length, torch.device(device), dtype, self.causal,
               None if gam is None else (gam.data_ptr(), gam._version, gam.device))
        if self._mask_cache is not None and self._mask_cache[0] == key:
            return self._mask_cache[1]
        if gam is not None:
            m = decay_mask(gam.to(device), length, self.causal).to(dtype)
        else:
            m = torch.ones(length, length, device=device, dtype=dtype).tril()[None]
        self._mask_cache = (key, m)
        return m

    def forward(self, s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """s: (B, T, size) spikes; mask: (B, T, 1) bool. Returns (B, T, size), real-valued."""
        b, t, _ = s.shape
        q, k, v = self.qkv(s, mask).chunk(3, dim=-1)
        q = self._heads(self.q_neuron(q, mask))
        k = self._heads(self.k_neuron(k, mask))
        v = self._heads(self.v_neuron(v, mask))
        scores = self.qk(q, k.transpose(-2, -1))
        m = self.score_mask(t, s.device, scores.dtype)
        if m is not None:
            scores = scores * m[None]
        # per-head scale after A V: the same as scaling the scores, on far fewer values
        ctx = self.av(scores, v) * self.scale.view(1, -1, 1, 1).to(scores.dtype)
        ctx = ctx.transpose(1, 2).reshape(b, t, self.size)
        return self.out(self.out_neuron(ctx, mask), mask)
