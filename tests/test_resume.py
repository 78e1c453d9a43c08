"""Training killed with SIGKILL in the middle of an epoch, then run again with the same command.

ESPnet writes ``checkpoint.pth`` (model, optimizer, scheduler, reporter) at the end of every
epoch; with ``--resume true`` (the recipes' default) a rerun continues after the last epoch
it holds, so a kill loses at most the epoch it interrupted.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

import torch
import yaml

from espnet_run import asr_train_args, synth_dataset

MAX_EPOCH = 3
COPIES = 5  # 6 sentences x 5 = 30 training utterances: 15 batches of 2 per epoch
CONFIG = {
    "encoder": "iml_spikeformer",
    "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 64,
                     "num_blocks": 2, "qkv_conv_kernel": 5},
    "frontend_conf": {"n_fft": 512, "hop_length": 160},
    "normalize": "utterance_mvn",
    "decoder": "transformer",
    "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1},
    "model_conf": {"ctc_weight": 0.3},
    "optim": "adam",
    "optim_conf": {"lr": 0.002},
    "scheduler": "warmuplr",
    "scheduler_conf": {"warmup_steps": 20},
    "max_epoch": MAX_EPOCH,
    "batch_type": "unsorted",
    "batch_size": 2,
    "log_interval": 5,
    "keep_nbest_models": 2,
    "num_att_plot": 0,
    "use_matplotlib": False,  # per-epoch plots cost seconds
    "use_tensorboard": False,
    "num_workers": 0,
    "seed": 0,
    "resume": True,
}


def copies(data: Dict[str, Path], out: Path, n: int) -> Dict[str, Path]:
    """The data lists with each utterance listed n times under new keys (same audio)."""
    out.mkdir()
    lists = {}
    for name in ("wav.scp", "text", "speech_shape"):
        lines = data[name].read_text().splitlines()
        rows = [f"{k}_{i} {rest}" for i in range(n)
                for k, rest in (line.split(maxsplit=1) for line in lines)]
        (out / name).write_text("\n".join(sorted(rows)) + "\n")
        lists[name] = out / name
    return lists


def wait_for(log: Path, proc: subprocess.Popen, text: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while text not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None, f"training ended before '{text}':\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no '{text}' after {timeout} s"
        time.sleep(0.05)


def test_training_killed_mid_epoch_resumes_from_last_checkpoint(tmp_path, capsys, monkeypatch):
    data = synth_dataset(tmp_path / "spoken")
    train = copies(data, tmp_path / "train", COPIES)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    exp = tmp_path / "exp"
    cmd = [sys.executable, "-m", "espnet_iml.bin.asr_train",
           *asr_train_args(data, config, exp, train=train)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")

    first_log = tmp_path / "first.log"
    with first_log.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            # Epoch 1 is over (checkpoint written) and epoch 2 is 5 of 15 batches in.
            wait_for(first_log, proc, "2epoch:train:1-5batch")
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
    first = first_log.read_text()
    assert "1epoch results" in first and "2epoch results" not in first
    assert torch.load(exp / "checkpoint.pth", weights_only=False)["reporter"]["epoch"] == 1

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-5000:]
    log = second.stderr
    assert f"The training was resumed using {exp / 'checkpoint.pth'}" in log
    # It restarts the interrupted epoch 2 (epoch 1 is not repeated) and reaches max_epoch.
    started = [line.split("INFO: ")[1].split("epoch")[0] for line in log.splitlines()
               if "epoch started" in line]
    assert started == [f"{e}/{MAX_EPOCH}" for e in range(2, MAX_EPOCH + 1)], started
    assert f"The training was finished at {MAX_EPOCH} epochs" in log
    states = torch.load(exp / "checkpoint.pth", weights_only=False)
    assert states["reporter"]["epoch"] == MAX_EPOCH
    assert sorted(states["reporter"]["stats"]) == list(range(1, MAX_EPOCH + 1))

    # The final and averaged models load with strict=True into a freshly built model.
    import espnet_iml  # noqa: F401  (registers the encoder)
    from espnet2.tasks.asr import ASRTask

    for name in (f"{MAX_EPOCH}epoch.pth", "valid.acc.ave.pth"):
        model, _ = ASRTask.build_model_from_file(exp / "config.yaml", None, "cpu")
        model.load_state_dict(torch.load(exp / name, map_location="cpu"), strict=True)
        assert type(model.encoder).__name__ == "IMLSpikeformerEncoder"

    # asr.sh stage 7 resumes only if espnet_iml.recipe.resume_check finds the same training:
    # the resumed run's own command passes (also with more epochs), another lr does not.
    from espnet_iml.recipe import resume_check
    previous = ["--previous", str(exp / "config.yaml"), "--"]
    assert resume_check.main([*previous, *cmd[3:]]) == 0
    assert resume_check.main([*previous, *cmd[3:], "--max_epoch", "9"]) == 0
    # The same files named relative to the work folder (a run started with absolute paths,
    # resumed from inside the folder) are the same training.
    monkeypatch.chdir(tmp_path)
    relative = [a.replace(f"{tmp_path}/", "") for a in cmd[3:]]
    assert relative != cmd[3:]
    assert resume_check.main([*previous, *relative]) == 0
    capsys.readouterr()
    assert resume_check.main([*previous, *cmd[3:], "--optim_conf", "lr=0.01"]) == 3
    assert capsys.readouterr().out == "  optim_conf: {lr: 0.002} -> {lr: 0.01}\n"
