"""IML-Spikeformer encoder for ESPnet2 (``encoder: iml_spikeformer``).

Paper (arXiv 2507.07396): a spiking Transformer encoder with IMLS neurons and HD-RepSSA.
The concrete architecture below is OUR DESIGN unless a docstring says otherwise; see
docs/design.md for which parts are stated by the paper and which are ours.
"""

import difflib
import inspect
import math
from typing import List, Optional, Tuple

import torch
from torch import nn
from typeguard import typechecked

from espnet2.asr.encoder.abs_encoder import AbsEncoder

from espnet_iml.block import SpikingBlock
from espnet_iml.hdm import decay_exponents
from espnet_iml.imls import IMLSNeuron
from espnet_iml.lif import mean_timesteps, repeat_timesteps, swap_imls_for_lif
from espnet_iml.norm import MaskedBatchNorm
from espnet_iml.subsampling import SpikingConv2dSubsampling, time_mask

try:  # ESPnet 202511 keeps it here; later releases moved it under espnet2.legacy
    from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError
except ImportError:  # pragma: no cover
    from espnet2.legacy.nets.pytorch_backend.transformer.subsampling import (  # type: ignore
        TooShortUttError,
    )


NEURONS = ("imls", "lif")


class IMLSpikeformerEncoder(AbsEncoder):
    """IML-Spikeformer encoder.

    Args:
        input_size: input feature size (80 for fbank).
        output_size: model width d.
        attention_heads: heads of HD-RepSSA (must divide output_size).
        linear_units: FFN hidden units.
        num_blocks: number of spiking blocks.
        dropout_rate: dropout on each block branch.
        spike_levels: D, max spikes per neuron per step (paper: multi-level; D=4 ours).
        threshold: IMLS threshold, "input_aware" (paper: input-aware; form ours) or
            "constant" (I-LIF style, for ablation).
        threshold_init: initial threshold scale k.
        qkv_conv_kernel: temporal kernel of the re-parameterized Q/K/V generator's conv
            branch (ours; 0 = pointwise only).
        spiking_frontend: spike after the first subsampling conv (ours; False = ESPnet's
            real-valued Conv2d subsampling with ReLU).
        frontend_channels: channels of the two subsampling convs (ours; 0 = output_size,
            as ESPnet's Conv2dSubsampling). Fewer channels make a training step much cheaper.
        hdm: use the Hierarchical Decay Mask (paper) with our RetNet-style schedule.
        causal: no frame attends to (or convolves with) future frames (streaming).
        branch_norm: norm in front of each block branch's first neuron (ours): "batch"
            (masked BatchNorm, an affine map at inference) or "layer" (per-token LayerNorm).
        hdm_low, hdm_high, hdm_span: decay schedule, see espnet_iml.hdm (ours). Required:
            0 < hdm_low <= hdm_high and hdm_span >= 0, so every exponent is positive (a
            decay in (0, 1)) and upper layers never decay faster than lower ones; a reversed
            schedule (hdm_low > hdm_high) is rejected as a likely typo (our choice).
        interctc_layer_idx: blocks (1-based) whose output feeds intermediate CTC.
        interctc_use_conditioning: self-conditioned CTC (add CTC posteriors back).
        sync_norm: under distributed training, the masked BatchNorms take their statistics
            over all processes' valid frames (ours; see espnet_iml.norm). False: per process.
        neuron: "imls" (the paper's multi-level neuron) or "lif" (OUR ABLATION option, the
            conventional baseline IMLS replaces): every IMLS neuron becomes a binary
            multi-step LIF neuron (espnet_iml.lif) and the encoder runs as a
            ``lif_timesteps``-step SNN, the input repeated along the batch and the outputs
            averaged over the timesteps. spike_levels, threshold and threshold_init then
            have no effect.
        lif_timesteps: T of ``neuron: lif`` (>= 1; unused with imls). Every synaptic layer
            processes T times as many rows, so a training step costs about T times more.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 1024,
        num_blocks: int = 12,
        dropout_rate: float = 0.1,
        spike_levels: int = 4,
        threshold: str = "input_aware",
        threshold_init: float = 1.0,
        qkv_conv_kernel: int = 15,
        spiking_frontend: bool = True,
        frontend_channels: int = 0,
        hdm: bool = True,
        causal: bool = False,
        branch_norm: str = "batch",
        hdm_low: float = 1.0,
        hdm_high: float = 3.0,
        hdm_span: float = 3.0,
        interctc_layer_idx: List[int] = [],
        interctc_use_conditioning: bool = False,
        sync_norm: bool = False,
        neuron: str = "imls",
        lif_timesteps: int = 4,
        **unknown,
    ):
        super().__init__()
        _reject_unknown(unknown)
        _check("spike_levels", spike_levels >= 1, f"must be >= 1 (got {spike_levels})")
        _check("num_blocks", num_blocks >= 1, f"must be >= 1 (got {num_blocks})")
        _check("attention_heads", attention_heads >= 1, f"must be >= 1 (got {attention_heads})")
        _check(
            "attention_heads",
            output_size % attention_heads == 0,
            f"({attention_heads}) must divide output_size ({output_size})",
        )
        _check("dropout_rate", 0.0 <= dropout_rate < 1.0, f"must be in [0, 1) (got {dropout_rate})")
        _check("frontend_channels", frontend_channels >= 0,
               f"must be >= 0 (0 = output_size; got {frontend_channels})")
        _check("input_size", input_size >= 7, f"must be >= 7 for Conv2d x4 (got {input_size})")
        for i in interctc_layer_idx:
            _check(
                "interctc_layer_idx",
                0 < i < num_blocks,
                f"entries must be in [1, num_blocks - 1] (got {interctc_layer_idx})",
            )
        _check("neuron", neuron in NEURONS, f"must be one of {NEURONS} (got {neuron!r})")
        _check("lif_timesteps", lif_timesteps >= 1, f"must be >= 1 (got {lif_timesteps})")
        _check_sizes_and_schedule(output_size, linear_units, threshold_init, hdm_low, hdm_high,
                                  hdm_span)
        self._output_size = output_size
        imls_conf = dict(levels=spike_levels, threshold=threshold, threshold_init=threshold_init)
        self.embed = SpikingConv2dSubsampling(
            input_size, output_size, spiking_frontend, imls_conf, frontend_channels
        )
        self.encoders = nn.ModuleList(
            SpikingBlock(
                output_size,
                attention_heads,
                linear_units,
                decay_exponents=(
                    decay_exponents(i, num_blocks, attention_heads, hdm_low, hdm_high, hdm_span)
                    if hdm
                    else None
                ),
                qkv_conv_kernel=qkv_conv_kernel,
                causal=causal,
                dropout_rate=dropout_rate,
                norm=branch_norm,
                **imls_conf,
            )
            for i in range(num_blocks)
        )
        self.after_norm = nn.LayerNorm(output_size)
        for m in self.modules():
            if isinstance(m, MaskedBatchNorm):
                m.sync = sync_norm
        # Timesteps per input: 1 for IMLS (the whole count in one step), T for the LIF ablation.
        self.timesteps = 1
        if neuron == "lif":
            swap_imls_for_lif(self, lif_timesteps)
            self.timesteps = lif_timesteps
        self.interctc_layer_idx = interctc_layer_idx
        self.interctc_use_conditioning = interctc_use_conditioning
        self.conditioning_layer = None  # set by ESPnetASRModel when conditioning is used

    def output_size(self) -> int:
        return self._output_size

    def neurons(self) -> List[IMLSNeuron]:
        return [m for m in self.modules() if isinstance(m, IMLSNeuron)]

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
        ctc=None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """xs_pad: (B, T, input_size); ilens: (B,). Returns (B, T', d), olens, None."""
        if xs_pad.size(1) < SpikingConv2dSubsampling.min_frames:
            raise TooShortUttError(
                f"has {xs_pad.size(1)} frames and is too short for subsampling "
                f"(it needs at least {SpikingConv2dSubsampling.min_frames} frames)",
                xs_pad.size(1),
                SpikingConv2dSubsampling.min_frames,
            )
        ilens = ilens.to(xs_pad.device)
        t, batch = self.timesteps, xs_pad.size(0)
        if t > 1:  # neuron: lif: T copies along the batch, timestep-major (espnet_iml.lif)
            xs_pad, ilens = repeat_timesteps(xs_pad, t), repeat_timesteps(ilens, t)
        xs, olens = self.embed(xs_pad, ilens)
        mask = time_mask(olens, xs.size(1))[..., None]

        intermediate = []
        for idx, block in enumerate(self.encoders, start=1):
            xs = block(xs, mask)
            if idx in self.interctc_layer_idx:
                out = self.after_norm(xs)
                intermediate.append((idx, out))
                if self.interctc_use_conditioning:
                    xs = xs + self.conditioning_layer(ctc.softmax(out))
        xs = self.after_norm(xs)
        if t > 1:  # rate decoding: the mean over the T timesteps
            xs, olens = mean_timesteps(xs, t), olens[:batch]
            intermediate = [(idx, mean_timesteps(out, t)) for idx, out in intermediate]
        if intermediate:
            return (xs, intermediate), olens, None
        return xs, olens, None


def _check(option: str, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"iml_spikeformer encoder_conf: {option} {what}")


def _check_sizes_and_schedule(
    output_size: int,
    linear_units: int,
    threshold_init: float,
    hdm_low: float,
    hdm_high: float,
    hdm_span: float,
) -> None:
    """Options that would otherwise crash deep inside (a zero width) or turn every output
    and gradient into NaN (a decay exponent <= 0 gives gamma <= 0, whose log is NaN)."""
    _check("output_size", output_size >= 1, f"must be >= 1 (got {output_size})")
    _check("linear_units", linear_units >= 1, f"must be >= 1 (got {linear_units})")
    _check(
        "threshold_init",
        math.isfinite(threshold_init) and threshold_init > 0,
        f"must be a finite number > 0 (got {threshold_init})",
    )
    for name, value in (("hdm_low", hdm_low), ("hdm_high", hdm_high), ("hdm_span", hdm_span)):
        _check(name, math.isfinite(value), f"must be a finite number (got {value})")
    _check("hdm_low", hdm_low > 0, f"must be > 0: the decay is 1 - 2^-e (got {hdm_low})")
    _check(
        "hdm_low",
        hdm_low <= hdm_high,
        f"({hdm_low}) must be <= hdm_high ({hdm_high}): lower layers decay faster",
    )
    _check("hdm_span", hdm_span >= 0, f"must be >= 0 (got {hdm_span})")


def _reject_unknown(unknown: dict) -> None:
    """An unknown YAML key is a typo more often than not: name it and the nearest option."""
    if not unknown:
        return
    known = [
        p
        for p in inspect.signature(IMLSpikeformerEncoder.__init__).parameters
        if p not in ("self", "input_size", "unknown")
    ]
    msgs = []
    for key in sorted(unknown):
        near = difflib.get_close_matches(key, known, n=1)
        msgs.append(f"'{key}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
    raise ValueError(
        "iml_spikeformer encoder_conf: unknown option(s) "
        + ", ".join(msgs)
        + f". Valid options: {', '.join(known)}"
    )
