"""`encoder: iml_spikeformer` through ESPnet's own train and inference commands.

For ASR, ST and SLU: a few training steps from a YAML config, then decoding with the saved
model through our inference entry points (ESPnet's Speech2Text-style loading path).
"""

from pathlib import Path

import pytest
import yaml

from espnet_run import run_module, run_script, synth_dataset

ENCODER = {
    "encoder": "iml_spikeformer",
    "encoder_conf": {
        "output_size": 32,
        "attention_heads": 2,
        "linear_units": 64,
        "num_blocks": 2,
        "qkv_conv_kernel": 5,
        "dropout_rate": 0.0,
    },
}
COMMON = {
    "frontend_conf": {"n_fft": 512, "hop_length": 160},
    "normalize": "utterance_mvn",
    "decoder": "transformer",
    "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1},
    "optim": "adam",
    "optim_conf": {"lr": 0.002},
    "max_epoch": 1,
    "batch_type": "unsorted",
    "batch_size": 3,
    "num_att_plot": 0,
    "num_workers": 0,
    "seed": 0,
}

# task -> (model option prefix in the inference command, extra training data, extra options)
TASKS = {
    "asr": ("asr", [], ["--model_conf", "ctc_weight=0.3"]),
    "st": ("st", ["src_text"], ["--src_token_list", "{tokens}", "--src_token_type", "char"]),
    "slu": ("slu", ["transcript"], ["--transcript_token_list", "{tokens}"]),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synth_dataset(tmp_path_factory.mktemp("spoken"))


@pytest.mark.parametrize("task", list(TASKS))
def test_train_then_decode(task, data, tmp_path):
    prefix, extra_data, extra_opts = TASKS[task]
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({**COMMON, **ENCODER}))
    exp = tmp_path / "exp"
    pairs = [f"{data['wav.scp']},speech,sound", f"{data['text']},text,text"]
    pairs += [f"{data['text']},{name},text" for name in extra_data]
    args = ["--config", config, "--output_dir", exp, "--ngpu", 0, "--token_type", "char",
            "--token_list", data["tokens.txt"], "--use_preprocessor", "true"]
    for split in ("train", "valid"):
        for pair in pairs:
            args += [f"--{split}_data_path_and_name_and_type", pair]
        args += [f"--{split}_shape_file", data["speech_shape"]]
    args += [a.format(tokens=data["tokens.txt"]) for a in extra_opts]
    run_module(f"espnet_iml.bin.{task}_train", args, cwd=tmp_path)

    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["encoder"] == "iml_spikeformer"
    assert saved["encoder_conf"]["num_blocks"] == 2
    model = exp / "1epoch.pth"
    assert model.exists(), sorted(p.name for p in exp.iterdir())

    out = tmp_path / "decode"
    run_module(
        f"espnet_iml.bin.{task}_inference",
        [f"--{prefix}_train_config", exp / "config.yaml", f"--{prefix}_model_file", model,
         "--data_path_and_name_and_type", f"{data['wav.scp']},speech,sound",
         "--output_dir", out, "--ngpu", 0, "--batch_size", 1, "--beam_size", 2,
         "--maxlenratio", 0.3],
        cwd=tmp_path,
    )
    hyps = (out / "1best_recog" / "text").read_text().splitlines()
    ids = [line.split()[0] for line in Path(data["wav.scp"]).read_text().splitlines()]
    assert sorted(h.split(maxsplit=1)[0] for h in hyps) == sorted(ids)


LOAD_PACKED = """
import sys, torch
import espnet_iml
from espnet2.main_funcs.pack_funcs import unpack
from espnet2.bin.asr_inference import Speech2Text
from espnet2.tasks.asr import ASRTask
import soundfile

files = unpack(sys.argv[1], sys.argv[2])
s2t = Speech2Text(**files, device="cpu", beam_size=2, maxlenratio=0.3)
assert type(s2t.asr_model.encoder).__name__ == "IMLSpikeformerEncoder"
# ESPnet loads checkpoints with strict=False: check nothing was silently dropped.
model, _ = ASRTask.build_model_from_file(files["asr_train_config"], None, "cpu")
state = torch.load(files["asr_model_file"], map_location="cpu")
missing, unexpected = model.load_state_dict(state, strict=True)
speech, rate = soundfile.read(sys.argv[3])
text = s2t(speech)[0][0]
print("DECODED:" + text)
"""


def test_packed_model_loads_through_speech2text(data, tmp_path):
    exp = tmp_path / "exp"
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({**COMMON, **ENCODER}))
    args = ["--config", config, "--output_dir", exp, "--ngpu", 0, "--token_type", "char",
            "--token_list", data["tokens.txt"], "--num_iters_per_epoch", 2]
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{data['wav.scp']},speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{data['text']},text,text",
                 f"--{split}_shape_file", data["speech_shape"]]
    run_module("espnet_iml.bin.asr_train", args, cwd=tmp_path)
    packed = tmp_path / "model.zip"
    run_module("espnet_iml.bin.pack", ["asr", "--asr_train_config", exp / "config.yaml",
                                       "--asr_model_file", exp / "1epoch.pth",
                                       "--outpath", packed], cwd=tmp_path)
    assert packed.stat().st_size > 0
    wav = Path(data["wav.scp"]).read_text().split()[1]
    script = tmp_path / "load.py"
    script.write_text(LOAD_PACKED)
    proc = run_script(script, [packed, tmp_path / "unpacked", wav], cwd=tmp_path)
    assert "DECODED:" in proc.stdout


def test_stock_espnet_command_knows_the_encoder(tmp_path):
    """After installation, ESPnet's own entry point accepts the encoder (autoload .pth)."""
    proc = run_module("espnet2.bin.asr_train", ["--print_config", "--encoder", "iml_spikeformer"],
                      cwd=tmp_path)
    printed = yaml.safe_load(proc.stdout)
    assert printed["encoder"] == "iml_spikeformer"
    assert printed["encoder_conf"]["spike_levels"] == 4
    assert printed["encoder_conf"]["spiking_frontend"] is True
