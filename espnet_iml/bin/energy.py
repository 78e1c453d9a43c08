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
untrained one. Beam search (beam B) costs about B times that decoder energy.
"""

import argparse
import contextlib
import json
import logging
import math
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import espnet_iml  # noqa: F401  (registers iml_spikeformer)
from espnet_iml.bin.launch import quiet_nltk

RATIO_KEY = "energy_ratio_encoder"  # generous convention (kept for scripts)
STRICT_KEY = "energy_ratio_encoder_strict"  # the headline
# float64 rounding over a deep encoder stays near 1e-12; a real mismatch (a spike count that
# differs) moves an output by the threshold scale, orders of magnitude more.
DEVIATION_TOLERANCE = 1e-9
SETTINGS = {True: "spiking_frontend", False: "real_frontend"}
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


# --------------------------------------------------------------------------- models


def _fresh_args(config: Path, token_list: Optional[Path], vocab_size: int, tmp: Path):
    """ESPnet's arguments for ``config``; a stand-in token list is written into ``tmp``,
    which must exist until the model is built (ESPnet reads the list then)."""
    from espnet2.tasks.asr import ASRTask

    if token_list is None:
        token_list = tmp / "tokens.txt"
        toks = ["<blank>", "<unk>"] + [f"t{i}" for i in range(vocab_size - 3)] + ["<sos/eos>"]
        token_list.write_text("\n".join(toks) + "\n")
    parser = ASRTask.get_parser()
    return parser.parse_args(["--config", str(config), "--token_list", str(token_list),
                              "--output_dir", str(tmp)])


def _own_setting(model) -> Optional[bool]:
    from espnet_iml.encoder import IMLSpikeformerEncoder

    enc = getattr(model, "encoder", None)
    return enc.embed.spiking if isinstance(enc, IMLSpikeformerEncoder) else None


def build_models(a) -> Tuple[List[Tuple[str, object, bool]], Optional[bool], List[str], int]:
    """[(setting name, model, trained?)], the model's own setting, notes, feature size."""
    import torch
    import yaml
    from espnet2.tasks.asr import ASRTask

    notes = []
    if a.asr_model_file or a.asr_train_config:
        model, margs = ASRTask.build_model_from_file(
            a.asr_train_config, a.asr_model_file, a.device
        )
        input_size = getattr(margs, "input_size", None) or 80
        own = _own_setting(model)
        models = [(SETTINGS.get(own, "model"), model, True)]
        if own is None:
            notes.append("the encoder is not iml_spikeformer: every op is a MAC (ratio 1)")
        elif a.frontends == "both":
            cfg_path = a.asr_train_config or Path(a.asr_model_file).parent / "config.yaml"
            cfg = yaml.safe_load(Path(cfg_path).read_text())
            cfg["encoder_conf"] = dict(cfg.get("encoder_conf") or {}, spiking_frontend=not own)
            torch.manual_seed(a.seed)
            other = ASRTask.build_model(argparse.Namespace(**cfg)).to(a.device)
            missing, unused = other.load_state_dict(model.state_dict(), strict=False)
            models.append((SETTINGS[not own], other, False))
            notes.append(
                f"{SETTINGS[not own]}: NOT TRAINED in this setting (weights copied from the "
                f"trained {SETTINGS[own]} model; {len(missing)} tensors fresh, {len(unused)} "
                "unused): MAC counts are exact, firing rates are not those of a trained model"
            )
        else:
            notes.append(
                f"only the trained setting ({SETTINGS[own]}) is reported; the other front "
                "end was not trained (--frontends both shows it with an untrained front end)"
            )
        return models, own, notes, input_size
    with tempfile.TemporaryDirectory(prefix="espnet_iml_energy.") as tmp:
        args = _fresh_args(a.config, a.token_list, a.vocab_size, Path(tmp))
        conf = dict(args.encoder_conf or {})
        own = None
        if args.encoder == espnet_iml.NAME:
            own = bool(conf.get("spiking_frontend", True))
        settings = [own] if own is None or a.frontends == "own" else [own, not own]
        models = []
        for sf in settings:
            torch.manual_seed(a.seed)
            if sf is not None:
                args.encoder_conf = dict(conf, spiking_frontend=sf)
            models.append((SETTINGS.get(sf, "model"), ASRTask.build_model(args).to(a.device), False))
    notes.append("fresh, UNTRAINED model(s): MAC counts are exact, firing rates are those of "
                 "random weights")
    return models, own, notes, getattr(args, "input_size", None) or 80


# --------------------------------------------------------------------------- data


def load_utterances(a, input_size: int, has_frontend: bool):
    """Yield (key, features or waveform (T, F) / (N,), seconds)."""
    import numpy as np
    import torch

    if not a.data_path_and_name_and_type:
        g = torch.Generator().manual_seed(a.seed)
        frames = int(a.synthetic_seconds * 100)
        for i in range(a.synthetic_utts):
            if has_frontend:
                x = 0.1 * torch.randn(int(a.synthetic_seconds * a.fs), generator=g)
            else:
                x = torch.randn(frames, input_size, generator=g)
            yield f"synthetic{i}", x, a.synthetic_seconds
        return
    from espnet2.train.dataset import ESPnetDataset

    entries = [tuple(s.split(",")) for s in a.data_path_and_name_and_type]
    for e in entries:
        if len(e) != 3:
            raise SystemExit(f"--data_path_and_name_and_type {','.join(e)}: need PATH,NAME,TYPE")
    speech = [e for e in entries if e[1] == "speech"]
    if not speech:
        raise SystemExit("--data_path_and_name_and_type: one entry must be named 'speech'")
    path, _, kind = speech[0]
    keys = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                keys.append(line.split(maxsplit=1)[0])
            if len(keys) >= a.max_utts:
                break
    ds = ESPnetDataset([speech[0]])
    for key in keys:
        x = torch.as_tensor(np.asarray(ds[key][1]["speech"]), dtype=torch.float32)
        if x.dim() == 1:  # waveform
            seconds = x.numel() / a.fs
            if not has_frontend:
                x = _fbank(x, a.fs, input_size)
        else:
            seconds = x.size(0) / 100.0  # 10 ms frames
        yield key, x, seconds


def _fbank(wave, fs: int, n_mels: int):
    """Log-mel fbank for models trained on precomputed features (no ESPnet frontend)."""
    import torchaudio

    if wave.abs().max() <= 1.0:
        wave = wave * 32768.0
    return torchaudio.compliance.kaldi.fbank(
        wave[None], num_mel_bins=n_mels, sample_frequency=fs, dither=0.0,
        frame_length=25.0, frame_shift=10.0,
    )


# --------------------------------------------------------------------------- counting


def measure(model, utts, a, trained: bool, title: str):
    import torch

    from espnet_iml.energy import count_energy

    model.eval()
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(a.seed)
    n, seconds, dec_tokens = 0, 0.0, 0
    with torch.no_grad(), count_energy(model, spike_driven=not a.hooks_only) as counter:
        for key, x, sec in utts:
            xs = x[None].to(dev)
            lens = torch.tensor([x.size(0)], device=dev)
            enc, enc_lens = model.encode(xs, lens)[:2]
            if isinstance(enc, tuple):
                enc = enc[0]
            hyp = None
            if getattr(model, "ctc", None) is not None:
                logp = model.ctc.log_softmax(enc)[0, : int(enc_lens[0])]
                ids = logp.argmax(-1).tolist()
                hyp = [t for i, t in enumerate(ids) if t != 0 and (i == 0 or t != ids[i - 1])]
            if getattr(model, "decoder", None) is not None and not a.no_decoder:
                if not trained or hyp is None:
                    length = max(1, round(a.decoder_tokens_per_frame * int(enc_lens[0])))
                    hyp = torch.randint(1, model.vocab_size - 1, (length,), generator=g).tolist()
                ys_in = torch.tensor([[model.sos] + hyp], device=dev)
                model.decoder(enc, enc_lens, ys_in, torch.tensor([ys_in.size(1)], device=dev))
                dec_tokens += ys_in.size(1)
            counter.release()
            n += 1
            seconds += sec
            log.info("%s: %s (%.2f s)", title, key, sec)
    meta = dict(title=title, utterances=n, audio_seconds=round(seconds, 2),
                decoder_tokens=dec_tokens, trained=trained,
                encoder_counts="hooks (modelled)" if a.hooks_only or not counter.executed
                else "spike-driven execution (float64)")
    return counter.report(meta)


# --------------------------------------------------------------------------- main


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

    torch.manual_seed(a.seed)
    # ESPnet prints import-time notices (flash attention) on stdout; stdout is the report.
    with contextlib.redirect_stdout(sys.stderr):
        models, own, notes, input_size = build_models(a)
    out = a.output_dir
    out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for name, model, is_trained in models:
        utts = load_utterances(a, input_size, getattr(model, "frontend", None) is not None)
        title = f"{name} ({'trained' if is_trained else 'untrained'})"
        reports[name] = measure(model, utts, a, is_trained, title)
    primary = SETTINGS.get(own, "model")
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
    head = _comparison(reports, primary, notes, a)
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


def _comparison(reports, primary: str, notes: List[str], a) -> str:
    from espnet_iml.energy.report import fmt_ratio

    lines = ["# Theoretical inference energy", ""]
    lines += [f"- {n}" for n in notes]
    lines += [
        "- ANN/SNN strict (headline) = every executed operation priced, every multiply "
        "involving a real value a MAC (4.6 pJ), only event-driven accumulates at 0.9 pJ, "
        "counted from the spike-driven execution of the encoder; generous = the field's "
        "convention (synaptic layers only: E_MAC 4.6 pJ, E_AC 0.9 pJ); see "
        "espnet_iml/energy/models.py for every model",
        "",
        "| setting | part | MACs/utt | mean count (AC layers) | mean count (neurons) | "
        "**ANN/SNN strict** | ANN/SNN generous | + element-wise | + memory | "
        "qANN/SNN (b = ceil(log2(D+1)) bits) | + memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in reports.items():
        n_utt = max(1, r.meta["utterances"])
        for part, t in r.totals.items():
            if part == "model" and len(r.totals) == 2:
                continue
            mc = t["mean_count_ac_layers"]
            mn = t["mean_count_neurons"]
            lines.append(
                f"| {name}{' (own)' if name == primary else ''} | {part} | "
                f"{t['macs_valid'] / n_utt / 1e6:.1f} M | {'-' if mc is None else f'{mc:.3f}'} | "
                f"{'-' if mn is None else f'{mn:.3f}'} | **{fmt_ratio(t['ratio_ann_snn_strict'])}** | "
                f"{t['ratio_ann_snn']:.3f} | "
                f"{t['ratio_ann_snn_with_elementwise']:.3f} | "
                f"{t['ratio_ann_snn_with_memory']:.3f} | {t['ratio_qann_snn']:.3f} | "
                f"{t['ratio_qann_snn_with_memory']:.3f} |"
            )
    r0 = next(iter(reports.values()))
    lines += ["", f"utterances: {r0.meta['utterances']}, audio: {r0.meta['audio_seconds']} s",
              ""]
    if not math.isfinite(reports[primary].totals.get("encoder", {}).get("ratio_ann_snn", 1.0)):
        lines.append("(no spiking layers)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
