"""Hook-based operation counter: observes a float model's forward and classifies each
synaptic layer as AC or MAC from where its input came from.

What is "spikes" is decided by provenance, not by value: a layer's input is spikes when it
IS an IMLS neuron's output tensor or a view of it (reshape / transpose / slice). Neuron
outputs are tracked by storage address with forward hooks (``espnet_iml.energy.provenance``);
each entry holds a weak reference to the output tensor, so an address freed and reused by
another tensor is never mistaken for spikes. Anything computed from spikes by another op (a sum, a scale) is real.

Matrix products of two spike tensors (Q K^T): the accumulations are driven by the events
of the LEFT operand (each unit of Q's count adds a row of K), so r is the left operand's
mean count; both operands' counts are kept in the report. A V with real scores A and spike
V is driven by V.

Re-parameterized layers (``LinearBN``, ``RepTemporalProjection``) are counted as units in
their deployed (folded) form whether or not they fold at run time (``fold_in_eval``): the
pointwise projection is the synaptic layer; the depthwise temporal filter of the Q/K/V
generator is listed with the element-wise ops. The counts are identical folded or not.

These hooks MODEL the element-wise work of a spiking layer (one threshold scale per output,
for instance); they do not execute it. With ``count_energy(model, spike_driven=True)`` every
``IMLSpikeformerEncoder`` inside ``model`` is instead executed by its spike-driven form
(``espnet_iml.inference``, run beside the float model by ``espnet_iml.energy.executed``),
which counts what it executes; only its counts carry the strict
convention (``espnet_iml.energy.models``).

A T-step binary LIF encoder (``neuron: lif``) is counted by these hooks too: its neurons'
outputs are spikes (one bit a step), every layer is counted as run over the T steps, and
``combined`` converts the ANN side to the one-step twin (``espnet_iml.energy.timesteps``).

Padding. ``macs`` counts the tensors as run. Spike-fed layers are counted by events:
AC ops = sum over valid input positions of count x fan-out, and ``macs_valid`` = the MACs
that touch valid inputs (Linear: valid tokens; ConvNd: valid output positions, i.e. windows
lying on valid input, exact at borders and strides; a product of two spike tensors: pairs
of valid positions, so padded keys add nothing to Q K^T). All energies use ``macs_valid``,
so a padded batch gives the same numbers as its utterances alone, with two exceptions:
layers fed real values (no mask to read: padded frames are counted), and A V, whose real
scores A carry no mask (V's events also fan out to padded query rows). Run one utterance
per forward (``espnet_iml.bin.energy`` does) for exact per-utterance numbers.

Usage::

    with count_energy(model, spike_driven=True) as counter:   # ESPnetASRModel or encoder
        model.encode(speech, lengths)
    report = counter.report()
    print(report.to_markdown()); report.save("out_dir")
"""

import math
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from espnet_iml.attention import MatMul
from espnet_iml.energy.elementwise import elementwise_ops_of
from espnet_iml.energy.executed import execute_alongside
from espnet_iml.energy.macs import (
    conv_fanout, conv_macs, linear_macs, matmul_macs, mean_count,
)
from espnet_iml.energy.provenance import SpikeRegistry, SpikeSource
from espnet_iml.energy.records import PARTS_ORDER, Tally
from espnet_iml.energy.timesteps import is_under, one_step_twin, same_every_step
from espnet_iml.imls import IMLSNeuron
from espnet_iml.lif import MultiStepEncoder, MultiStepLIF
from espnet_iml.rep import LinearBN, RepTemporalProjection

# element-wise kinds that only a spiking network executes (its ANN twin has none of them)
NEURON_KINDS = ("threshold", "scale (threshold fold)")


def _is_espnet_mha(m: nn.Module) -> bool:
    attrs = ("linear_q", "linear_k", "linear_v", "linear_out", "h", "d_k")
    return all(hasattr(m, a) for a in attrs)


class EnergyCounter(Tally):
    """Hooks a model and accumulates per-layer op counts; use through ``count_energy``.

    Args:
        model: the module to profile (an ESPnetASRModel, an encoder, any nn.Module).
        root_part: part name of modules not under a top-level child named in ``parts``
            (for an encoder passed directly: "encoder").
        parts: top-level child names reported as separate parts.
        sram_pj_per_64bit: memory model constant (espnet_iml.energy.models).
        exclude: names of submodules (and their children) to leave unhooked.
    """

    def __init__(
        self,
        model: nn.Module,
        root_part: Optional[str] = None,
        parts: Sequence[str] = PARTS_ORDER,
        sram_pj_per_64bit: Optional[float] = None,
        exclude: Sequence[str] = (),
    ):
        super().__init__(root_part, parts, sram_pj_per_64bit)
        self.model = model
        self.exclude = tuple(exclude)
        self.spikes = SpikeRegistry()
        self._handles = []
        self._recording: Dict[IMLSNeuron, bool] = {}
        # (name prefix, Tally) of the parts executed by a spike-driven form
        self.executed: List[Tuple[str, Tally]] = []
        # largest |spike-driven - float64 model| over valid output frames seen so far
        self.spike_driven_deviation = 0.0
        # T-step encoders (neuron: lif) by module name, and their real-fed layers whose
        # input was the same at every step (espnet_iml.energy.timesteps)
        self.multistep: Dict[str, int] = {}
        self._computed_once: set = set()
        self._lif_neurons: set = set()  # names of the MultiStepLIF neurons

    # ----- setup
    def _excluded(self, name: str) -> bool:
        return any(is_under(name, e) for e in self.exclude)

    def attach(self) -> "EnergyCounter":
        from espnet_iml.encoder import IMLSpikeformerEncoder

        self.multistep = {
            name: m.timesteps for name, m in self.model.named_modules()
            if isinstance(m, (IMLSpikeformerEncoder, MultiStepEncoder)) and m.timesteps > 1
        }
        inside_unit = set()
        for m in self.model.modules():
            if isinstance(m, (LinearBN, RepTemporalProjection)):
                inside_unit.update(id(c) for c in m.modules() if c is not m)
        for name, m in self.model.named_modules():
            if id(m) in inside_unit or self._excluded(name):
                continue
            hook = None
            if isinstance(m, IMLSNeuron):
                self._recording[m] = m.recording
                m.recording = True
                self.neuron(name, m.levels)
                hook = self._neuron_hook
            elif isinstance(m, MultiStepLIF):
                self.neuron(name, m.timesteps)
                self._lif_neurons.add(name)
                hook = self._lif_hook
            elif isinstance(m, (nn.Linear, LinearBN, RepTemporalProjection)):
                hook = self._linear_hook
            elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
                hook = self._conv_hook
            elif isinstance(m, MatMul):
                hook = self._matmul_hook
            elif _is_espnet_mha(m):
                hook = self._mha_hook
            elif elementwise_ops_of(m) is not None:
                hook = self._elementwise_hook
            if hook is not None:
                self._handles.append(
                    m.register_forward_hook(self._wrap(hook, name), with_kwargs=True)
                )
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for m, was in self._recording.items():
            m.recording = was
            if not was:
                m.last_counts = None
        self._recording.clear()
        self.spikes.clear()

    def _wrap(self, fn, name):
        def hook(module, args, kwargs, output):
            fn(name, module, args, kwargs, output)

        return hook

    def execute_spike_driven(self, name: str, encoder: nn.Module) -> None:
        """Run ``encoder``'s spike-driven form after each of its forwards, on the same
        inputs, into a tally of its own (merged under ``name`` by ``report``)."""
        tally, handle = execute_alongside(encoder, self._note_deviation)
        self.executed.append((name + "." if name else "", tally))
        self._handles.append(handle)

    def _note_deviation(self, dev: float) -> None:
        self.spike_driven_deviation = max(self.spike_driven_deviation, dev)

    # ----- spike provenance (espnet_iml.energy.provenance)
    def spike_source(self, x: torch.Tensor) -> Optional[SpikeSource]:
        """(neuron name, counts, valid mask, D) if ``x`` is an IMLS output or a view of it."""
        return self.spikes.source(x)

    # ----- hooks
    def _neuron_hook(self, name, m, args, kwargs, out):
        u = args[0]
        mask = args[1] if len(args) > 1 else kwargs.get("mask")
        counts = m.last_counts
        if counts is None or counts.shape != out.shape:
            return
        # same memory layout as the output, so views of the output map onto it
        counts = torch.empty_strided(out.shape, out.stride(), dtype=counts.dtype).copy_(counts)
        valid = None
        if mask is not None:
            valid = torch.empty_strided(out.shape, out.stride(), dtype=torch.bool)
            valid.copy_(mask.to(torch.bool).expand(out.shape))
        self.spikes.register(name, out, counts, valid, m.levels)
        self.neurons[name].add(counts[valid] if valid is not None else counts)
        # thresholding: |U| accumulate + compare/round per element, one scale per element
        n = u.numel()
        tokens = n // self._reduced_size(u, m.reduce_dims)
        if m.threshold == "input_aware":
            self._elementwise(name + ".threshold", "threshold", mults=n + 2 * tokens, adds=2 * n,
                              activations=n)
        else:
            self._elementwise(name + ".threshold", "threshold", mults=n, adds=n, activations=n)

    def _lif_hook(self, name, m, args, kwargs, out):
        """A T-step binary LIF neuron: its output (T x B, ...) is 1-bit spikes, counted as
        run; its firing statistic is each position's spike count over the T steps (0..T)."""
        u = args[0] if args else kwargs["u"]
        mask = args[1] if len(args) > 1 else kwargs.get("mask")
        spikes = torch.empty_strided(out.shape, out.stride(), dtype=out.dtype).copy_(out)
        valid = None
        if mask is not None:
            valid = torch.empty_strided(out.shape, out.stride(), dtype=torch.bool)
            valid.copy_(mask.to(torch.bool).expand(out.shape))
        self.spikes.register(name, out, spikes, valid, 1)
        t = m.timesteps
        per_position = spikes.reshape(t, -1).sum(0)
        if valid is not None:  # the mask is the same at every step (repeated lengths)
            per_position = per_position[valid.reshape(t, -1)[0]]
        self.neurons[name].add(per_position)
        # per element and step: the leak (one multiply by 1 / tau), the charge (two adds),
        # the threshold comparison (one); the hard reset is a conditional write
        n = u.numel()
        self._elementwise(name + ".threshold", "threshold", mults=n, adds=3 * n, activations=n)

    def _steps(self, name: str) -> int:
        """T of the multi-step encoder ``name`` belongs to (1: none)."""
        return next((t for prefix, t in self.multistep.items() if is_under(name, prefix)), 1)

    @staticmethod
    def _reduced_size(u, dims) -> int:
        return math.prod(u.shape[d] for d in dims)

    def _synaptic(
        self,
        name: str,
        kind: str,
        macs: int,
        out_elems: int,
        driving: torch.Tensor,
        other: Optional[torch.Tensor] = None,
        fanout=None,
    ) -> None:
        """Account one call. ``fanout(values)`` maps a tensor shaped like the driving input
        to the number of MACs each element takes part in, summed (None: uniform fan-out,
        macs / numel). Spike-fed layers are counted by events: AC ops = sum over valid
        input positions of count x fan-out, so padding never adds operations."""
        src = self.spike_source(driving)
        src_other = self.spike_source(other) if other is not None else None
        if src is None and src_other is not None:  # only the right operand is spikes
            src, src_other = src_other, None
            driving, other = other, driving
            fanout = self._matmul_fanout(other, driving, left_drives=False)
        if src is None:
            t = self._steps(name)
            if t > 1 and all(same_every_step(x, t) for x in (driving, other) if x is not None):
                self._computed_once.add(name)
            self.real_layer(name, kind, macs, out_elems)
            return
        neuron, counts, valid, levels = src
        counts = counts.double()
        valid_f = valid.double() if valid is not None else torch.ones_like(counts)
        if fanout is None:
            fan = macs / counts.numel()
            fanout = lambda v, valid: fan * float(v.sum())  # noqa: E731
        sources = (neuron,) + ((src_other[0],) if src_other else ())
        self.spike_layer(
            name, kind, macs,
            macs_valid=fanout(valid_f, valid_f),
            ac_ops=fanout(counts * valid_f, valid_f),
            nonzero_macs=fanout((counts > 0).double() * valid_f, valid_f),
            out_elems=out_elems,
            levels=levels,
            sources=sources,
            r_other=mean_count(src_other[1], src_other[2])[0] if src_other else None,
        )
        # the per-token threshold theta of each IMLS operand scales the output once (LIF
        # spikes are 0 / 1: nothing to scale)
        scaled = sum(s not in self._lif_neurons for s in sources)
        if scaled:
            self._elementwise(name + ".theta_scale", "scale (threshold fold)",
                              mults=out_elems * scaled)

    def _valid_or_ones(self, x: torch.Tensor) -> torch.Tensor:
        src = self.spike_source(x)
        if src is not None and src[2] is not None:
            return src[2].double()
        return torch.ones(x.shape, dtype=torch.float64, device=x.device)

    def _matmul_fanout(self, a, b, left_drives: bool = True):
        """Fan-out of ``a @ b``'s driving operand, restricted to valid positions of the
        other operand (a padded key contributes no MACs to a valid query)."""
        if left_drives:
            other = self._valid_or_ones(b)
            return lambda v, valid: float(torch.matmul(v, other).sum())
        other = self._valid_or_ones(a)
        return lambda v, valid: float(torch.matmul(other, v).sum())

    def _elementwise(self, name, kind, mults=0.0, adds=0.0, activations=0.0):
        """``activations``: for a neuron, its inputs (the ANN twin's ReLU comparisons)."""
        if kind in NEURON_KINDS:
            self.elementwise_op(name, kind, mults, adds, ann_mults=0.0, ann_adds=activations)
        else:
            self.elementwise_op(name, kind, mults, adds)

    def _linear_hook(self, name, m, args, kwargs, out):
        x = args[0] if args else kwargs.get("x", kwargs.get("input", kwargs.get("s")))
        if isinstance(m, nn.Linear):
            inf, outf = m.in_features, m.out_features
        elif isinstance(m, LinearBN):
            inf, outf = m.linear.in_features, m.linear.out_features
        else:  # RepTemporalProjection: pointwise layer + depthwise temporal filter
            inf, outf = m.pointwise.in_features, m.pointwise.out_features
            taps = max(m.kernel_size, 1)
            self._elementwise(
                name + ".temporal_filter", "depthwise temporal filter",
                mults=out.numel() * taps, adds=out.numel() * taps,
            )
        kind = "Linear" if isinstance(m, nn.Linear) else type(m).__name__
        self._synaptic(name, kind, linear_macs(x.shape, inf, outf), out.numel(), x)

    def _conv_hook(self, name, m, args, kwargs, out):
        x = args[0] if args else kwargs.get("input")
        macs = conv_macs(out.shape, m.in_channels, m.groups, m.kernel_size)
        self._synaptic(name, type(m).__name__, macs, out.numel(), x, fanout=conv_fanout(m))

    def _matmul_hook(self, name, m, args, kwargs, out):
        a, b = args[0], args[1]
        self._synaptic(name, "MatMul", matmul_macs(a.shape, b.shape), out.numel(), a, b,
                       fanout=self._matmul_fanout(a, b))

    def _mha_hook(self, name, m, args, kwargs, out):
        q = args[0] if args else kwargs["query"]
        k = args[1] if len(args) > 1 else kwargs["key"]
        b, t1, t2 = q.size(0), q.size(1), k.size(1)
        macs = b * m.h * t1 * t2 * m.d_k
        scores = b * m.h * t1 * t2
        n_scores = 2 if hasattr(m, "linear_pos") else 1  # rel-pos attention: a second score
        for prod in ("qk", "av") + (("pos",) if n_scores == 2 else ()):
            out_elems = scores if prod != "av" else b * t1 * m.h * m.d_k
            self.real_layer(f"{name}.{prod}", "MatMul (attention)", macs, out_elems)
        # scale 1/sqrt(d_k), softmax (exp ~ 1 mult, sum, divide)
        self._elementwise(name + ".softmax", "softmax + scale", mults=3 * scores * n_scores,
                          adds=scores * (1 + n_scores))

    def _elementwise_hook(self, name, m, args, kwargs, out):
        for suffix, kind, mults, adds in elementwise_ops_of(m)(m, args, kwargs, out):
            self._elementwise(name + suffix, kind, mults=mults, adds=adds)

    # ----- results
    def reset(self) -> None:
        """Forget counts (hooks stay)."""
        self.layers.clear()
        self.elementwise.clear()
        for _, tally in self.executed:
            tally.layers.clear()
            tally.elementwise.clear()
            tally.neurons.clear()
        for st in self.neurons.values():
            st.calls, st.valid, st.count_sum, st.hist = 0, 0, 0.0, []
        self.spikes.clear()

    def release(self) -> None:
        """Drop provenance entries of finished forwards (call between utterances)."""
        self.spikes.clear()

    def report(self, meta: Optional[dict] = None) -> "EnergyReport":
        from espnet_iml.energy.report import EnergyReport

        meta = dict(meta or {})
        if self.executed:
            meta["spike_driven_max_abs_deviation"] = self.spike_driven_deviation
        return EnergyReport.build(self.combined(), meta)

    def combined(self) -> Tally:
        """The hooks' records and those of every spike-driven execution, in one tally;
        a T-step encoder's records converted to the one-step ANN twin's convention."""
        if not self.executed and not self.multistep:
            return self
        out = Tally(self.root_part, self.parts, self.sram_pj_per_64bit)
        out.merge(self)
        for prefix, tally in self.executed:
            out.merge(tally, prefix)
        for prefix, t in self.multistep.items():
            one_step_twin(out, prefix, t, self._computed_once)
            out.multistep_parts[out.part(prefix)] = t
        return out


@contextmanager
def count_energy(model: nn.Module, spike_driven: bool = False, **kwargs) -> Iterator[EnergyCounter]:
    """Context manager: hooks ``model`` and yields an ``EnergyCounter``; hooks and the
    neurons' ``recording`` flags are restored on exit. Use under ``torch.no_grad()``.

    ``spike_driven``: every ``IMLSpikeformerEncoder`` with IMLS neurons in ``model``
    (``model`` itself included) is also executed, on the same inputs, by its spike-driven
    form, and ITS counts (the ops it executed) replace the hooks' for that encoder; the
    float encoder's output still goes on to the rest of the model. An encoder with LIF
    neurons (``neuron: lif``) has no spike-driven form: the hooks count it. Other kwargs:
    ``EnergyCounter``'s."""
    encoders = []
    if spike_driven:
        from espnet_iml.encoder import IMLSpikeformerEncoder

        encoders = [(n, m) for n, m in model.named_modules()
                    if isinstance(m, IMLSpikeformerEncoder)
                    and not any(isinstance(c, MultiStepLIF) for c in m.modules())]
        kwargs["exclude"] = tuple(kwargs.get("exclude", ())) + tuple(n for n, _ in encoders)
    counter = EnergyCounter(model, **kwargs).attach()
    for name, enc in encoders:
        counter.execute_spike_driven(name, enc)
    try:
        yield counter
    finally:
        counter.detach()
