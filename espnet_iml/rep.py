"""Re-parameterizable synaptic layers: trained multi-branch, evaluated folded.

OUR DESIGN for the "Rep" in RepSSA (the paper's method text is unavailable). In training a
layer is a sum of branches, each ending in a BatchNorm; in eval mode the branches and
BatchNorms are folded into one set of weights computed on the fly from the parameters, so a
checkpoint (or an averaged checkpoint: ESPnet averages BatchNorm statistics too) always
stores the training form and folding happens after averaging, never before.
"""

from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from espnet_iml.norm import MaskedBatchNorm


class LinearBN(nn.Module):
    """Linear (no bias) + masked BatchNorm; folds into one biased Linear in eval mode.

    Args:
        in_features, out_features: sizes.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = MaskedBatchNorm(out_features)
        self.fold_in_eval = True

    def folded(self) -> Tuple[torch.Tensor, torch.Tensor]:
        a, c = self.bn.eval_affine()
        return self.linear.weight * a[:, None], c

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.training or not self.fold_in_eval:
            return self.bn(self.linear(x), mask)
        w, b = self.folded()
        return F.linear(x, w, b)


class RepTemporalProjection(nn.Module):
    """Pointwise projection of spikes followed by re-parameterizable temporal branches.

    Training form (per output channel, z = W s with padded frames zeroed):
        y = BN_id(z) + BN_conv(DepthwiseConv_K(z))
    Eval form: y = DepthwiseConv_K'(z) + b, where the identity branch, both BatchNorms and
    the conv are merged into one kernel K' and bias b. The pointwise W sees integer spikes
    (accumulate-only); the depthwise filter costs K multiplies per channel per frame.
    ``kernel_size = 0`` leaves only the identity branch (a plain Linear + BN).

    Args:
        in_features, out_features: sizes.
        kernel_size: temporal kernel of the conv branch (odd unless causal; 0 = none).
        causal: pad the conv on the left only, so no output looks at future frames.
    """

    def __init__(
        self, in_features: int, out_features: int, kernel_size: int = 15, causal: bool = False
    ):
        super().__init__()
        if kernel_size < 0:
            raise ValueError(f"qkv_conv_kernel must be >= 0, got {kernel_size}")
        if kernel_size > 0 and not causal and kernel_size % 2 == 0:
            raise ValueError(
                f"qkv_conv_kernel must be odd for a non-causal encoder, got {kernel_size}"
            )
        self.kernel_size = kernel_size
        self.causal = causal
        self.pointwise = nn.Linear(in_features, out_features, bias=False)
        self.bn_id = MaskedBatchNorm(out_features)
        if kernel_size > 0:
            self.conv = nn.Conv1d(
                out_features, out_features, kernel_size, groups=out_features, bias=False
            )
            self.bn_conv = MaskedBatchNorm(out_features)
        self.fold_in_eval = True

    def _pad(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> padded for a 'same'-length (or causal) depthwise conv."""
        k = self.kernel_size
        left = k - 1 if self.causal else (k - 1) // 2
        return F.pad(z, (left, k - 1 - left))

    def folded(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(depthwise kernel (C, 1, K'), bias (C,)) of the merged eval-mode layer."""
        a_id, c_id = self.bn_id.eval_affine()
        if self.kernel_size == 0:
            return a_id.view(-1, 1, 1), c_id
        a_conv, c_conv = self.bn_conv.eval_affine()
        kernel = self.conv.weight * a_conv.view(-1, 1, 1)
        tap = self.kernel_size - 1 if self.causal else (self.kernel_size - 1) // 2
        identity = torch.zeros_like(kernel)
        identity[:, 0, tap] = a_id
        return kernel + identity, c_id + c_conv

    def forward(self, s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """s: (B, T, C_in) spikes; mask: (B, T, 1) bool, True = valid. Returns (B, T, C_out)."""
        # Zero padded frames so the temporal conv cannot carry them into valid frames.
        z = self.pointwise(s).masked_fill(~mask, 0.0)
        if self.training or not self.fold_in_eval:
            y = self.bn_id(z, mask)
            if self.kernel_size > 0:
                zc = self.conv(self._pad(z.transpose(1, 2))).transpose(1, 2)
                y = y + self.bn_conv(zc, mask)
            return y
        kernel, bias = self.folded()
        if self.kernel_size == 0:
            return z * kernel.view(-1) + bias
        y = F.conv1d(self._pad(z.transpose(1, 2)), kernel, bias, groups=kernel.size(0))
        return y.transpose(1, 2)
