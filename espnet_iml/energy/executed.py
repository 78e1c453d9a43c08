"""The spike-driven execution of an IML-Spikeformer encoder, run beside the float model.

Its tally holds the operations the spike-driven form (``espnet_iml.inference``) executed,
which is what the strict energy convention prices. Each run is checked against the float
model in float64 (its eval form, as deployed) on the same inputs: the outputs must agree to
rounding, on whatever model is counted (a trained recipe model included).
"""

import copy
from typing import Callable, Tuple

import torch
from torch import nn

from espnet_iml.energy.records import Tally


def execute_alongside(encoder: nn.Module, on_deviation: Callable[[float], None]
                      ) -> Tuple[Tally, "torch.utils.hooks.RemovableHandle"]:
    """Hook ``encoder`` so that each of its forwards is also run by its spike-driven form
    into the returned tally; ``on_deviation`` gets the largest |spike-driven - float64|
    difference over valid output frames of each forward. Remove the handle to stop."""
    from espnet_iml.inference import spike_driven

    executor = spike_driven(encoder)
    reference = copy.deepcopy(encoder).to(torch.float64).eval()
    tally = Tally(root_part="encoder", parts=())
    tally.executed_parts.append("encoder")

    def hook(module, args, kwargs, output):
        xs = args[0] if args else kwargs["xs_pad"]
        ilens = args[1] if len(args) > 1 else kwargs["ilens"]
        with torch.no_grad():
            got, olens = executor(xs, ilens, tally=tally)[:2]
            want = reference(xs.to(torch.float64), ilens)[0]
        if isinstance(got, tuple):
            got, want = got[0], want[0]
        valid = torch.arange(got.size(1), device=got.device)[None] < olens[:, None]
        on_deviation((got - want).abs()[valid].max().item() if bool(valid.any()) else 0.0)

    return tally, encoder.register_forward_hook(hook, with_kwargs=True)
