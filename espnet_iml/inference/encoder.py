"""The spike-driven IML-Spikeformer encoder: inference only, built from trained weights.

Each utterance runs alone (event-driven hardware has no padding): its valid frames in, its
valid output frames out (zeros beyond them in the padded batch output). Every synaptic
layer that the energy report counts as accumulate-only is executed from the D binary slots
of its input spikes; every real-valued operation is executed explicitly; both are counted
into a ``Tally`` as they run (``espnet_iml.inference.events``). In float64 the output equals
the float model's eval output to rounding (tested to 1e-9).
"""

from typing import List, Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from espnet_iml.encoder import IMLSpikeformerEncoder, TooShortUttError
from espnet_iml.energy.records import Tally
from espnet_iml.inference.block import SpikeDrivenBlock
from espnet_iml.inference.frontend import SpikeDrivenSubsampling
from espnet_iml.inference.norm import ExplicitLayerNorm
from espnet_iml.lif import MultiStepLIF
from espnet_iml.subsampling import SpikingConv2dSubsampling


class SpikeDrivenEncoder(nn.Module):
    """Inference-only executor of a trained ``IMLSpikeformerEncoder`` (see module doc).

    Args:
        encoder: the trained encoder (its weights are copied; later training of it does
            not change this module).
    """

    def __init__(self, encoder: IMLSpikeformerEncoder):
        super().__init__()
        lif = next((m for m in encoder.modules() if isinstance(m, MultiStepLIF)), None)
        if lif is not None:
            # neuron: lif runs T binary steps (T = 1 included); the executor here replays one
            # step of multi-level IMLS spikes, so it has nothing correct to run for it.
            raise ValueError(
                f"spike-driven inference runs IMLS neurons only; this encoder has neuron: lif "
                f"({lif.timesteps} timesteps). Count its energy with the forward hooks: "
                f"count_energy(model) without spike_driven, or python -m espnet_iml.bin.energy "
                f"--hooks_only"
            )
        if encoder.interctc_use_conditioning:
            raise NotImplementedError(
                "spike-driven inference: self-conditioned intermediate CTC is not supported"
            )
        self._output_size = encoder.output_size()
        self.embed = SpikeDrivenSubsampling(encoder.embed, "embed")
        self.encoders = nn.ModuleList(
            SpikeDrivenBlock(block, f"encoders.{i}") for i, block in enumerate(encoder.encoders)
        )
        self.after_norm = ExplicitLayerNorm(encoder.after_norm, "after_norm")
        self.interctc_layer_idx = list(encoder.interctc_layer_idx)

    def output_size(self) -> int:
        return self._output_size

    @torch.no_grad()
    def forward(self, xs_pad: torch.Tensor, ilens: torch.Tensor, tally: Optional[Tally] = None):
        """xs_pad: (B, T, input_size); ilens: (B,). Returns (B, T', d), olens, None (and,
        with intermediate CTC layers, ((out, [(idx, out_idx), ...]), olens, None)) like
        the encoder. ``tally`` receives the counts (None: counted and dropped)."""
        if xs_pad.size(1) < SpikingConv2dSubsampling.min_frames:
            raise TooShortUttError(
                f"has {xs_pad.size(1)} frames and is too short for subsampling",
                xs_pad.size(1), SpikingConv2dSubsampling.min_frames,
            )
        if tally is None:
            tally = Tally(root_part="encoder", parts=())
        dtype = self.after_norm.weight.dtype
        t_out = SpikeDrivenSubsampling.out_length(xs_pad.size(1))
        outs: List[torch.Tensor] = []
        inter = {i: [] for i in self.interctc_layer_idx}
        olens = []
        for b in range(xs_pad.size(0)):
            frames = int(ilens[b])
            olen = max(SpikeDrivenSubsampling.out_length(frames), 0)
            olens.append(olen)
            if olen == 0:
                empty = xs_pad.new_zeros(0, self._output_size, dtype=dtype)
                outs.append(empty)
                for i in inter:
                    inter[i].append(empty)
                continue
            h = self.embed(xs_pad[b : b + 1, :frames].to(dtype), tally)
            for idx, block in enumerate(self.encoders, start=1):
                h = block(h, tally)
                if idx in inter:
                    inter[idx].append(self.after_norm(h, tally)[0])
            outs.append(self.after_norm(h, tally)[0])
        olens = torch.tensor(olens, dtype=torch.long, device=xs_pad.device)

        def pad(seqs):
            out = pad_sequence(seqs, batch_first=True)
            return nn.functional.pad(out, (0, 0, 0, t_out - out.size(1)))

        xs = pad(outs)
        if inter:
            return (xs, [(i, pad(v)) for i, v in inter.items()]), olens, None
        return xs, olens, None
