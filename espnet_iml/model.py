"""``model: espnet_iml``: ESPnet's ASR model plus firing-rate-aware training (OUR DESIGN).

ESPnetASRModel adds no encoder-side loss, so this subclass does: with ``rate_weight`` > 0 it
measures the mean spike count r of the encoder's neurons in every forward pass
(espnet_iml.rate: the energy report's definition of r, with a straight-through gradient)
and adds

    loss_rate = rate_weight * (r - rate_target)^2              rate_mode: target
    loss_rate = rate_weight * max(0, r - rate_target)^2        rate_mode: ceiling

to ESPnet's loss. ``target`` pulls r to the target from both sides, ``ceiling`` only pushes
it down when it is above (r below the target is left alone). Training and validation both
report ``loss_rate`` and ``spike_count`` (r) in ESPnet's statistics; ``loss`` includes
loss_rate. With ``rate_weight: 0`` (the default) the model is ESPnetASRModel unchanged, and
decoding (which calls ``encode`` only) never measures anything.

Scale: ESPnet's loss is summed over an utterance's tokens and averaged over the batch
(``length_normalized_loss: false``), so it is tens to hundreds early in training while
(r - t)^2 is below D^2; the weight has to be chosen against that.
Under ``--ngpu`` > 1 with DataParallel (not DDP) the replicas would share one meter: not
supported.
"""

import math
from typing import Dict, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_iml.rate import SpikeCountMeter, rate_loss

RATE_MODES = ("target", "ceiling")  # espnet_iml.rate.rate_loss


class ESPnetIMLASRModel(ESPnetASRModel):
    """ESPnetASRModel with an optional loss on the encoder's mean spike count r.

    Args (``model_conf``, besides every option of ESPnetASRModel):
        rate_weight: weight w >= 0 of the rate loss; 0 turns it off.
        rate_target: target t >= 0 of r, at most the largest count one of the encoder's
            neurons can emit (D for IMLS, T for ``neuron: lif``).
        rate_mode: "target" (w (r - t)^2) or "ceiling" (w max(0, r - t)^2).
    """

    @typechecked
    def __init__(
        self,
        *args,
        rate_weight: float = 0.0,
        rate_target: float = 0.0,
        rate_mode: str = "target",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        _check("rate_weight", math.isfinite(rate_weight) and rate_weight >= 0,
               f"must be a finite number >= 0 (0 = off; got {rate_weight})")
        _check("rate_target", math.isfinite(rate_target) and rate_target >= 0,
               f"must be a finite number >= 0 (got {rate_target})")
        _check("rate_mode", rate_mode in RATE_MODES,
               f"must be one of {RATE_MODES} (got {rate_mode!r})")
        self.rate_weight = rate_weight
        self.rate_target = rate_target
        self.rate_mode = rate_mode
        self.rate_meter: Optional[SpikeCountMeter] = None
        if rate_weight > 0:
            meter = SpikeCountMeter(self.encoder)
            _check("rate_weight", bool(meter.neurons),
                   f"({rate_weight}) needs an encoder with spiking neurons (iml_spikeformer); "
                   f"{type(self.encoder).__name__} has none")
            _check("rate_target", rate_target <= meter.max_count(),
                   f"({rate_target}) is above the largest count the encoder's neurons can "
                   f"emit ({meter.max_count()})")
            self.rate_meter = meter

    def rate_loss(self, r: torch.Tensor) -> torch.Tensor:
        """The rate loss of mean spike count ``r`` (module docstring)."""
        return rate_loss(r, self.rate_weight, self.rate_target, self.rate_mode)

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        if self.rate_meter is None:
            return super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        self.rate_meter.start()
        try:
            loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths,
                                                  **kwargs)
        finally:
            r = self.rate_meter.stop()
        if r is None:  # no neuron ran (cannot happen with a spiking encoder)
            return loss, stats, weight
        loss_rate = self.rate_loss(r)
        loss = loss + loss_rate.reshape(loss.shape)
        stats["loss_rate"] = loss_rate.detach()
        stats["spike_count"] = r.detach()
        stats["loss"] = loss.detach()
        return force_gatherable((loss, stats, weight), loss.device)


def _check(option: str, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"espnet_iml model_conf: {option} {what}")
