"""What the energy command measures: the ASR model(s) and the utterances.

A trained model is loaded from its config and weights; a fresh (untrained) one is built from
a training YAML. For IML-Spikeformer either can be reported in both front-end settings
(spiking / real-valued); the setting a model was not trained in is marked untrained.
"""

import argparse
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import espnet_iml

SETTINGS = {True: "spiking_frontend", False: "real_frontend"}

# [(setting name, model, trained?)], the model's own setting (None: not iml_spikeformer),
# notes for the report, input feature size
Models = Tuple[List[Tuple[str, object, bool]], Optional[bool], List[str], int]


def setting_name(own: Optional[bool]) -> str:
    """The report's name of a front-end setting ("model" for a non-spiking encoder)."""
    return SETTINGS.get(own, "model")


def _own_setting(model) -> Optional[bool]:
    from espnet_iml.encoder import IMLSpikeformerEncoder

    enc = getattr(model, "encoder", None)
    return enc.embed.spiking if isinstance(enc, IMLSpikeformerEncoder) else None


def trained_models(asr_train_config: Optional[Path], asr_model_file: Optional[Path],
                   both_frontends: bool, device: str = "cpu", seed: int = 0) -> Models:
    """The trained model; with ``both_frontends`` also its other front-end setting, built
    fresh with the trained weights copied in (its front end is then untrained)."""
    import torch
    import yaml
    from espnet2.tasks.asr import ASRTask

    notes = []
    model, margs = ASRTask.build_model_from_file(asr_train_config, asr_model_file, device)
    input_size = getattr(margs, "input_size", None) or 80
    own = _own_setting(model)
    models = [(setting_name(own), model, True)]
    if own is None:
        notes.append("the encoder is not iml_spikeformer: every op is a MAC (ratio 1)")
    elif both_frontends:
        cfg_path = asr_train_config or Path(asr_model_file).parent / "config.yaml"
        cfg = yaml.safe_load(Path(cfg_path).read_text())
        cfg["encoder_conf"] = dict(cfg.get("encoder_conf") or {}, spiking_frontend=not own)
        torch.manual_seed(seed)
        other = ASRTask.build_model(argparse.Namespace(**cfg)).to(device)
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


def fresh_models(config: Path, token_list: Optional[Path], vocab_size: int,
                 both_frontends: bool, device: str = "cpu", seed: int = 0) -> Models:
    """Untrained model(s) from a training YAML: its own front-end setting, and with
    ``both_frontends`` the other one too (same seed)."""
    import torch
    from espnet2.tasks.asr import ASRTask

    with tempfile.TemporaryDirectory(prefix="espnet_iml_energy.") as tmp:
        args = _fresh_args(config, token_list, vocab_size, Path(tmp))
        conf = dict(args.encoder_conf or {})
        own = None
        if args.encoder == espnet_iml.NAME:
            own = bool(conf.get("spiking_frontend", True))
        settings = [own, not own] if own is not None and both_frontends else [own]
        models = []
        for sf in settings:
            torch.manual_seed(seed)
            if sf is not None:
                args.encoder_conf = dict(conf, spiking_frontend=sf)
            models.append((setting_name(sf), ASRTask.build_model(args).to(device), False))
    notes = ["fresh, UNTRAINED model(s): MAC counts are exact, firing rates are those of "
             "random weights"]
    return models, own, notes, getattr(args, "input_size", None) or 80


def synthetic_utterances(n: int, seconds: float, fs: int, input_size: int, waveform: bool,
                         seed: int = 0) -> Iterator[Tuple[str, object, float]]:
    """``n`` random utterances (waveforms for a model with a front end, else features):
    for smoke tests, not representative of speech."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        if waveform:
            x = 0.1 * torch.randn(int(seconds * fs), generator=g)
        else:
            x = torch.randn(int(seconds * 100), input_size, generator=g)
        yield f"synthetic{i}", x, seconds


def data_utterances(data_path_and_name_and_type: List[str], max_utts: int, fs: int,
                    input_size: int, has_frontend: bool) -> Iterator[Tuple[str, object, float]]:
    """(key, features (T, F) or waveform (N,), seconds) of the first ``max_utts`` entries of
    the ``speech`` entry (ESPnet's PATH,NAME,TYPE). A waveform is turned into fbank for a
    model trained on precomputed features."""
    import numpy as np
    import torch
    from espnet2.train.dataset import ESPnetDataset

    entries = [tuple(s.split(",")) for s in data_path_and_name_and_type]
    for e in entries:
        if len(e) != 3:
            raise SystemExit(f"--data_path_and_name_and_type {','.join(e)}: need PATH,NAME,TYPE")
    speech = [e for e in entries if e[1] == "speech"]
    if not speech:
        raise SystemExit("--data_path_and_name_and_type: one entry must be named 'speech'")
    path = speech[0][0]
    keys = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                keys.append(line.split(maxsplit=1)[0])
            if len(keys) >= max_utts:
                break
    ds = ESPnetDataset([speech[0]])
    for key in keys:
        x = torch.as_tensor(np.asarray(ds[key][1]["speech"]), dtype=torch.float32)
        if x.dim() == 1:  # waveform
            seconds = x.numel() / fs
            if not has_frontend:
                x = _fbank(x, fs, input_size)
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
