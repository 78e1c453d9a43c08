"""The ablations of IML-Spikeformer: each one a named switch of the training config.

An ablation is the full model's training config (``conf/train_asr_iml_spikeformer_small.yaml``,
or the recipe's tiny one) with one override merged in, written as its own config, so that
local/ablate.sh trains it through the comparison harness like any other model. Names:

==================  =========================================================================
name                override
==================  =========================================================================
``d<N>``            ``encoder_conf.spike_levels: N`` (the D sweep; D = 4 is the full model)
``no_hdm``          ``encoder_conf.hdm: false`` (no hierarchical decay mask)
``plain_ssa``       ``encoder_conf.qkv_conv_kernel: 0``: RepSSA without its temporal branch,
                    i.e. Q, K, V = Linear + BN of the spikes (Spikformer's SSA); HDM stays on
``const_thr``       ``encoder_conf.threshold: constant`` (a learnable per-layer constant
                    threshold, I-LIF style, instead of the input-aware one)
``real_frontend``   ``encoder_conf.spiking_frontend: false`` (ESPnet's real-valued
                    Conv2d subsampling instead of the spiking front end)
``lif<T>``          ``encoder_conf.neuron: lif, lif_timesteps: T`` (every IMLS neuron a
                    binary LIF neuron, the encoder a T-step SNN)
``rate<t>w<w>``     ``model: espnet_iml`` with ``model_conf.rate_target: t, rate_weight: w``
                    (firing-rate-aware training, rate_mode target; ``ratecap<t>w<w>``: the
                    same with rate_mode ceiling), e.g. ``rate0.4w50``
==================  =========================================================================

Everything here is OUR DESIGN (the ablation list follows the project's issue, the paper
ablates its own modules but its settings are not available to us).
"""

import copy
import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

Override = Dict[str, Any]

FULL_MODEL = "iml_spikeformer"

# name -> (override, what it switches)
FIXED: Dict[str, Tuple[Override, str]] = {
    "no_hdm": ({"encoder_conf": {"hdm": False}}, "hierarchical decay mask off"),
    "plain_ssa": ({"encoder_conf": {"qkv_conv_kernel": 0}},
                  "RepSSA's temporal branch off: Q/K/V = Linear + BN (plain SSA)"),
    "const_thr": ({"encoder_conf": {"threshold": "constant"}},
                  "constant threshold instead of input-aware"),
    "real_frontend": ({"encoder_conf": {"spiking_frontend": False}},
                      "real-valued front end instead of spiking"),
}

_NUMBER = r"(\d+(?:\.\d+)?)"


def _d(m: re.Match) -> Tuple[Override, str]:
    d = int(m.group(1))
    return {"encoder_conf": {"spike_levels": d}}, f"D = {d} spike levels"


def _lif(m: re.Match) -> Tuple[Override, str]:
    t = int(m.group(1))
    return ({"encoder_conf": {"neuron": "lif", "lif_timesteps": t}},
            f"binary LIF neurons, T = {t} timesteps, instead of IMLS")


def _rate(m: re.Match) -> Tuple[Override, str]:
    mode = "ceiling" if m.group(1) == "ratecap" else "target"
    target, weight = float(m.group(2)), float(m.group(3))
    word = "ceiling" if mode == "ceiling" else "target"
    return ({"model": "espnet_iml",
             "model_conf": {"rate_target": target, "rate_weight": weight, "rate_mode": mode}},
            f"spike-count {word} {target:g}, weight {weight:g}")


# (pattern, its form for the help text, the override it gives)
PATTERNS: List[Tuple[re.Pattern, str, Callable[[re.Match], Tuple[Override, str]]]] = [
    (re.compile(r"d([1-9]\d*)"), "d<N>", _d),
    (re.compile(r"lif([1-9]\d*)"), "lif<T>", _lif),
    (re.compile(rf"(rate|ratecap){_NUMBER}w{_NUMBER}"), "rate<t>w<w>, ratecap<t>w<w>", _rate),
]

# The issue's set: the D sweep (D = 4 is the full model), then one switch per module.
DEFAULT = ["d1", "d2", "d8", "no_hdm", "plain_ssa", "const_thr", "real_frontend", "lif4"]


@dataclass
class Ablation:
    name: str
    override: Override
    description: str

    def switch(self) -> str:
        """The override as one line of YAML-like text, e.g. ``encoder_conf.hdm: false``."""
        parts = []
        for key, value in self.override.items():
            if isinstance(value, dict):
                parts += [f"{key}.{k}: {_yaml_scalar(v)}" for k, v in value.items()]
            else:
                parts.append(f"{key}: {_yaml_scalar(value)}")
        return ", ".join(parts)


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def names_help() -> str:
    return ", ".join(list(FIXED) + [form for _, form, _ in PATTERNS])


def ablation(name: str) -> Ablation:
    """The ablation called ``name``; ValueError naming the valid names otherwise."""
    if name in FIXED:
        override, what = FIXED[name]
        return Ablation(name, copy.deepcopy(override), what)
    for pattern, _, make in PATTERNS:
        m = pattern.fullmatch(name)
        if m:
            override, what = make(m)
            return Ablation(name, override, what)
    raise ValueError(f"unknown ablation '{name}'; valid: {names_help()}")


def merge(base: Dict[str, Any], override: Override) -> Dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in (dicts merged key by key, one level
    deep as ESPnet's *_conf sections are; everything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _effective_encoder_conf(conf: Dict[str, Any]) -> Dict[str, Any]:
    from espnet_iml.encoder import IMLSpikeformerEncoder

    sig = inspect.signature(IMLSpikeformerEncoder.__init__).parameters
    defaults = {k: p.default for k, p in sig.items() if p.default is not inspect.Parameter.empty}
    return {**defaults, **(conf.get("encoder_conf") or {})}


def derive(base: Dict[str, Any], ab: Ablation) -> Tuple[Dict[str, Any], Optional[str]]:
    """(the ablation's config, a note when it changes nothing against ``base``).

    The base must be an IML-Spikeformer config; an override that leaves every effective
    value (the encoder's defaults included) as it was is allowed (e.g. ``d4`` against a
    D = 4 base: another run of the full model) but noted."""
    if base.get("encoder") != "iml_spikeformer":
        raise ValueError(f"the base config's encoder is {base.get('encoder')!r}: ablations "
                         "switch options of encoder: iml_spikeformer")
    out = merge(base, ab.override)
    same = (_effective_encoder_conf(out) == _effective_encoder_conf(base)
            and all(out.get(k) == base.get(k) for k in out if k != "encoder_conf"))
    note = f"{ab.name} ({ab.switch()}) is the base config's own setting" if same else None
    return out, note


def config_text(config: Dict[str, Any], ab: Ablation, base_path: str) -> str:
    """The YAML of an ablation config, with a header saying where it comes from."""
    import yaml

    head = [
        f"# Ablation {ab.name}: {ab.description}.",
        "# Generated by python -m espnet_iml.bin.ablate configs (local/ablate.sh) from",
        f"# {base_path} with the override: {ab.switch()}",
        "# Do not edit: edit the base config or espnet_iml/compare/ablations.py and regenerate.",
    ]
    return "\n".join(head) + "\n" + yaml.safe_dump(config, sort_keys=False,
                                                   default_flow_style=False)
