"""The ablation options through ESPnet's own train and inference commands: ``model:
espnet_iml`` with the rate loss on, and ``neuron: lif``, a few training steps of a tiny
model on six spoken sentences, then decoding with the saved model."""

import re

import yaml

from espnet_run import run_module, synth_dataset
from test_plugin_tasks import COMMON, ENCODER


def test_rate_loss_and_lif_neuron_train_and_decode(tmp_path):
    data = synth_dataset(tmp_path / "spoken")
    conf = {**COMMON, **ENCODER}
    conf["encoder_conf"] = {**ENCODER["encoder_conf"], "neuron": "lif", "lif_timesteps": 2}
    conf["model"] = "espnet_iml"
    conf["model_conf"] = {"ctc_weight": 0.3, "rate_weight": 10.0, "rate_target": 0.2,
                          "rate_mode": "ceiling"}
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(conf))
    exp = tmp_path / "exp"
    args = ["--config", config, "--output_dir", exp, "--ngpu", 0, "--token_type", "char",
            "--token_list", data["tokens.txt"], "--num_iters_per_epoch", 2]
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{data['wav.scp']},speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{data['text']},text,text",
                 f"--{split}_shape_file", data["speech_shape"]]
    train = run_module("espnet_iml.bin.asr_train", args, cwd=tmp_path)
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["model"] == "espnet_iml" and saved["model_conf"]["rate_weight"] == 10.0
    assert saved["encoder_conf"]["neuron"] == "lif"
    # ESPnet reports the rate loss and r for training and validation
    results = re.findall(r"1epoch results: (.*)", train.stderr)
    assert results and "[train]" in results[-1] and "[valid]" in results[-1]
    for part in results[-1].split("[valid]"):
        assert re.search(r"loss_rate=[0-9.e+-]+", part) and re.search(r"spike_count=[0-9.]+", part)
    out = tmp_path / "decode"
    run_module("espnet_iml.bin.asr_inference",
               ["--asr_train_config", exp / "config.yaml", "--asr_model_file", exp / "1epoch.pth",
                "--data_path_and_name_and_type", f"{data['wav.scp']},speech,sound",
                "--output_dir", out, "--ngpu", 0, "--batch_size", 1, "--beam_size", 2,
                "--maxlenratio", 0.3], cwd=tmp_path)
    assert len((out / "1best_recog" / "text").read_text().splitlines()) == 6
