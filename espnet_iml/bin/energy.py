"""Theoretical inference energy of an ESPnet ASR model over real utterances.

Trained model (as the recipe's energy stage calls it)::

    python -m espnet_iml.bin.energy --asr_train_config exp/.../config.yaml \\
        --asr_model_file exp/.../valid.acc.ave.pth \\
        --data_path_and_name_and_type dump/fbank/test/feats.scp,speech,kaldi_ark \\
        --output_dir exp/.../energy [--max_utts 50]

Fresh (untrained) model from a training YAML, both front ends (spiking / real-valued)::

    python -m espnet_iml.bin.energy --config conf/train_asr_iml_spikeformer.yaml \\
        --data_path_and_name_and_type data/test/wav.scp,speech,sound --output_dir out

Writes energy.md, energy.json and PNGs (energy_<setting>_spike_counts.png,
energy_<setting>_breakdown.png) to --output_dir, prints the summary to stdout and these lines
for scripts::

    energy_ratio_encoder_strict=<E_ANN / E_SNN of the encoder, strict convention (headline)>
    energy_ratio_encoder=<the same, generous convention (synaptic layers only)>
    spike_driven_max_abs_deviation=<largest |spike-driven - float64 model| output difference;
        a warning above 1e-9>

for the model's own front-end setting (the trained one, or the config's). Logs go to
stderr. The encoder's operations are counted from its spike-driven execution
(espnet_iml.inference, float64); the energy models: espnet_iml/energy/models.py.

Each utterance is run alone (batch 1: no padding), through the encoder, the CTC projection
and the attention decoder teacher-forced on one hypothesis: the greedy CTC output of a
trained model, or ``--decoder_tokens_per_frame`` x encoder frames random tokens for an
untrained one. Beam search (beam B) costs about B times that decoder energy. What is
measured: espnet_iml/energy/inputs.py; the counting run: espnet_iml/energy/measure.py.
"""

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

import espnet_iml  # noqa: F401  (registers iml_spikeformer)
from espnet_iml.bin.launch import quiet_nltk

RATIO_KEY = "energy_ratio_encoder"  # generous convention (kept for scripts)
STRICT_KEY = "energy_ratio_encoder_strict"  # the headline
# float64 rounding over a deep encoder stays near 1e-12; a real mismatch (a spike count that
# differs) moves an output by the threshold scale, orders of magnitude more.
DEVIATION_TOLERANCE = 1e-9
log = logging.getLogger("espnet_iml.energy")


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Theoretical inference energy (ANN vs SNN) of an ESPnet ASR model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    g = ap.add_argument_group("model (trained, or fresh from a training config)")
    g.add_argument("--asr_train_config", type=Path, help="config.yaml of a trained model")
    g.add_argument("--asr_model_file", type=Path, help="trained weights (.pth)")
    g.add_argument("--config", type=Path, help="training YAML: build a fresh, untrained model")
    g.add_argument("--token_list", type=Path, help="token list for --config")
    g.add_argument("--vocab_size", type=int, default=100,
                   help="vocabulary size for --config without --token_list")
    g.add_argument("--frontends", choices=["auto", "both", "own"], default="auto",
                   help="front-end settings to report: auto = both for a fresh model, the "
                        "trained one only for a trained model; both = also the other "
                        "setting of a trained model (its front end is then UNTRAINED: the "
                        "shared weights are copied, the rest is fresh)")
    g = ap.add_argument_group("data")
    g.add_argument("--data_path_and_name_and_type", action="append", default=[],
                   help="PATH,speech,TYPE with TYPE sound (wav.scp) or kaldi_ark (feats.scp); "
                        "other ESPnet loader types work too")
    g.add_argument("--max_utts", type=int, default=20, help="utterances to use (first N)")
    g.add_argument("--synthetic_utts", type=int, default=2,
                   help="with no data: number of random-feature utterances (not "
                        "representative; for smoke tests)")
    g.add_argument("--synthetic_seconds", type=float, default=10.0)
    g.add_argument("--fs", type=int, default=16000, help="sample rate of sound input")
    g = ap.add_argument_group("counting")
    g.add_argument("--no_decoder", action="store_true", help="skip the attention decoder")
    g.add_argument("--hooks_only", action="store_true",
                   help="count the encoder with forward hooks only, without executing its "
                        "spike-driven form (faster; no strict numbers)")
    g.add_argument("--decoder_tokens_per_frame", type=float, default=0.15,
                   help="decoder hypothesis length per encoder frame for untrained models")
    g.add_argument("--sram_pj_per_64bit", type=float, default=10.0,
                   help="memory model: SRAM energy per 64-bit access (Horowitz 2014: 8 KB "
                        "10, 32 KB 20, 1 MB 100)")
    g.add_argument("--no_plots", action="store_true")
    g.add_argument("--device", default="cpu")
    g.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output_dir", type=Path, required=True)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    run(argv)
    return 0


def run(argv: Optional[List[str]] = None) -> Dict[str, object]:
    """main() without the exit status: returns the reports, the ratio, the own setting."""
    ap = get_parser()
    a = ap.parse_args(argv)
    trained = bool(a.asr_model_file or a.asr_train_config)
    if trained == bool(a.config):
        ap.error("give either --asr_train_config/--asr_model_file (trained) or --config (fresh)")
    for p in (a.asr_train_config, a.asr_model_file, a.config, a.token_list):
        if p is not None and not p.is_file():
            ap.error(f"{p}: no such file")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    quiet_nltk()
    import torch

    from espnet_iml.energy import markdown_report, plot_report
    from espnet_iml.energy.inputs import (
        data_utterances, fresh_models, setting_name, synthetic_utterances, trained_models,
    )
    from espnet_iml.energy.measure import measure
    from espnet_iml.energy.report import comparison_markdown

    torch.manual_seed(a.seed)
    # ESPnet prints import-time notices (flash attention) on stdout; stdout is the report.
    with contextlib.redirect_stdout(sys.stderr):
        if trained:
            models, own, notes, input_size = trained_models(
                a.asr_train_config, a.asr_model_file, a.frontends == "both", a.device, a.seed)
        else:
            models, own, notes, input_size = fresh_models(
                a.config, a.token_list, a.vocab_size, a.frontends != "own", a.device, a.seed)
    out = a.output_dir
    out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for name, model, is_trained in models:
        has_frontend = getattr(model, "frontend", None) is not None
        if a.data_path_and_name_and_type:
            utts = data_utterances(a.data_path_and_name_and_type, a.max_utts, a.fs, input_size,
                                   has_frontend)
        else:
            utts = synthetic_utterances(a.synthetic_utts, a.synthetic_seconds, a.fs,
                                        input_size, has_frontend, a.seed)
        title = f"{name} ({'trained' if is_trained else 'untrained'})"
        reports[name] = measure(model, utts, is_trained, title, spike_driven=not a.hooks_only,
                                decoder=not a.no_decoder,
                                decoder_tokens_per_frame=a.decoder_tokens_per_frame,
                                sram_pj_per_64bit=a.sram_pj_per_64bit, seed=a.seed)
    primary = setting_name(own)
    has_encoder = "encoder" in reports[primary].totals
    ratio = reports[primary].ratio("encoder") if has_encoder else None
    strict = reports[primary].ratio("encoder", "strict") if has_encoder else None

    deviation = reports[primary].meta.get("spike_driven_max_abs_deviation")
    if deviation is not None:
        notes.append(f"spike-driven execution vs the float model in float64, largest "
                     f"|difference| of an output value: {deviation:.3g}")
        if deviation > DEVIATION_TOLERANCE:
            log.warning("the spike-driven encoder differs from the float model by %.3g (more "
                        "than %g): its counts may not describe this model; please report it",
                        deviation, DEVIATION_TOLERANCE)
    head = comparison_markdown(reports, primary, notes)
    md = [head] + [markdown_report(r, r.meta["title"]) for r in reports.values()]
    (out / "energy.md").write_text("\n".join(md))
    (out / "energy.json").write_text(json.dumps(dict(
        primary=primary, **{STRICT_KEY: strict, RATIO_KEY: ratio},
        spike_driven_max_abs_deviation=deviation, notes=notes,
        settings={k: r.to_dict() for k, r in reports.items()},
    ), indent=1))
    if not a.no_plots:
        for name, r in reports.items():
            plot_report(r, out, f"energy_{name}")
    print(head)
    print(f"outputs: {out}/energy.md, energy.json" + ("" if a.no_plots else ", energy_*.png"))
    print(f"{STRICT_KEY}={strict:.4f}" if strict is not None else f"{STRICT_KEY}=nan")
    print(f"{RATIO_KEY}={ratio:.4f}" if ratio is not None else f"{RATIO_KEY}=nan")
    if deviation is not None:
        print(f"spike_driven_max_abs_deviation={deviation:.3g}")
    return dict(reports=reports, ratio=ratio, strict_ratio=strict, primary=primary)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
