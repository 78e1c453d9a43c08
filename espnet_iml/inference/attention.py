"""HD-RepSSA, executed from spikes.

    acc    = sum_d slots_d(S) @ W_qkv^T                 (events accumulate weights: AC)
    z      = acc * theta_S                              (per token, after accumulation)
    q,k,v  = DepthwiseFilter(z) + b                     (folded temporal branches: real taps)
    Q,K,V  = IMLS(q), IMLS(k), IMLS(v)
    C      = sum_d slots_d(Q) @ counts(K)^T             (each Q event adds a row of K's
                                                         integer counts: AC, fan-out T)
    A'     = C * (theta_Q * scale_h) * (theta_K * theta_V) [* HDM_h]
    ctx    = sum_e A' @ slots_e(V)                      (each V event adds a column of A': AC)
    out    = (sum_d slots_d(IMLS(ctx)) @ W_out^T) * theta + b

theta_V moves from V's rows into A's columns (they are the same index j), and theta_Q
times the per-head scale is one number per (head, query): 2 multiplies per score, plus one
for the decay mask when HDM is on (OUR DESIGN of the deployed order; the ANN twin folds the
per-head scale into its weights and pays the decay mask only). A causal mask without HDM
is a selection, not a multiply. The decay mask itself is a constant table per length.
"""

from typing import Dict

import torch
from torch import nn
from torch.nn import functional as F

from espnet_iml.attention import HDRepSSA
from espnet_iml.energy.records import Tally
from espnet_iml.hdm import decay_mask
from espnet_iml.inference import events
from espnet_iml.inference.neuron import SpikeDrivenNeuron


class SpikeDrivenAttention(nn.Module):
    """Executes an ``HDRepSSA`` on one utterance.

    Args:
        attn: the trained attention; name: its module path ("encoders.<i>.attn").
    """

    def __init__(self, attn: HDRepSSA, name: str):
        super().__init__()
        self.name = name
        self.heads, self.d_head, self.size = attn.heads, attn.d_head, attn.size
        self.causal = attn.causal
        self.kernel_size = attn.qkv.kernel_size
        self.pad = (attn.qkv.kernel_size - 1 if attn.causal else (attn.qkv.kernel_size - 1) // 2)
        with torch.no_grad():
            kernel, bias = attn.qkv.folded()
            w_out, b_out = attn.out.folded()
            buffers = dict(w_qkv=attn.qkv.pointwise.weight, kernel=kernel, b_qkv=bias,
                           scale=attn.scale, w_out=w_out, b_out=b_out)
            if attn.gammas is not None:
                buffers["gammas"] = attn.gammas
            for key, value in buffers.items():
                self.register_buffer(key, value.detach().clone())
        self.hdm = attn.gammas is not None
        self.q_neuron = SpikeDrivenNeuron(attn.q_neuron, f"{name}.q_neuron")
        self.k_neuron = SpikeDrivenNeuron(attn.k_neuron, f"{name}.k_neuron")
        self.v_neuron = SpikeDrivenNeuron(attn.v_neuron, f"{name}.v_neuron")
        self.out_neuron = SpikeDrivenNeuron(attn.out_neuron, f"{name}.out_neuron")
        self._masks: Dict[int, torch.Tensor] = {}

    def decay(self, length: int) -> torch.Tensor:
        """(H, T, T) decay mask (the model's), kept per length: a constant table."""
        if length not in self._masks:
            self._masks[length] = decay_mask(self.gammas, length, self.causal)
        return self._masks[length]

    def _qkv(self, slots: torch.Tensor, theta: torch.Tensor, tally: Tally, sources) -> torch.Tensor:
        n = f"{self.name}.qkv"
        acc = events.event_linear(slots, self.w_qkv, tally, n, "RepTemporalProjection", sources)
        z = events.scale_tokens(acc, theta, None, tally, n)
        if self.kernel_size == 0:
            tally.elementwise_op(n + ".temporal_filter", "depthwise temporal filter",
                                 mults=z.numel())
            return z * self.kernel.view(-1) + self.b_qkv
        k = self.kernel_size
        zp = F.pad(z.transpose(1, 2), (self.pad, k - 1 - self.pad))
        y = F.conv1d(zp, self.kernel, self.b_qkv, groups=self.kernel.size(0))
        tally.elementwise_op(n + ".temporal_filter", "depthwise temporal filter",
                             mults=y.numel() * k)
        return y.transpose(1, 2)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(..., T, size) -> (..., H, T, d_head)."""
        *lead, t, _ = x.shape
        return x.reshape(*lead, t, self.heads, self.d_head).transpose(-3, -2)

    def forward(self, s, tally: Tally, source: str) -> torch.Tensor:
        """s: Spikes of the branch neuron, (1, T, size). Returns (1, T, size), real."""
        n = self.name
        t = s.counts.size(1)
        q, k, v = self._qkv(s.slots, s.theta, tally, [source]).chunk(3, dim=-1)
        sq, sk, sv = self.q_neuron(q, tally), self.k_neuron(k, tally), self.v_neuron(v, tally)
        k_counts = self._heads(sk.counts)
        scores = events.event_matmul_left(
            self._heads(sq.slots), k_counts.transpose(-2, -1), tally, f"{n}.qk",
            [self.q_neuron.name, self.k_neuron.name],
            right_counts_mean=float(sk.counts.sum()) / sk.counts.numel(),
        )
        # per (head, query) and per key factors: theta_Q * scale_h, theta_K * theta_V
        # (a constant threshold is one number: then so are these factors, per head)
        row = sq.theta.reshape(1, 1, -1, 1) * self.scale.view(1, -1, 1, 1)
        col = (sk.theta * sv.theta).reshape(1, 1, 1, -1)
        a = scores * row * col
        tally.elementwise_op(f"{n}.score_scale", events.SCALE_KIND,
                             mults=row.numel() + col.numel() + 2 * a.numel(),
                             ann_mults=0.0, ann_adds=0.0)
        if self.hdm:
            a = a * self.decay(t)[None]
            tally.elementwise_op(f"{n}.decay_mask", "decay mask", mults=a.numel())
        elif self.causal:
            a = a.masked_fill(~torch.ones(t, t, dtype=torch.bool, device=a.device).tril(), 0.0)
        ctx = events.event_matmul_right(a, self._heads(sv.slots), tally, f"{n}.av",
                                        [self.v_neuron.name])
        ctx = ctx.transpose(1, 2).reshape(1, t, self.size)
        so = self.out_neuron(ctx, tally)
        acc = events.event_linear(so.slots, self.w_out, tally, f"{n}.out", "LinearBN",
                                  [self.out_neuron.name])
        return events.scale_tokens(acc, so.theta, self.b_out, tally, f"{n}.out")
