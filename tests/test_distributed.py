"""Training with 2 processes through ESPnet's own distributed path, on CPU (gloo).

Each process is ``python -m espnet_iml.bin.asr_train ... --ngpu 0 --dist_backend gloo
--dist_world_size 2 --dist_rank R --dist_init_method file://...``: ESPnet's main_worker
initializes torch.distributed, shards every batch between the ranks, wraps the model in
DistributedDataParallel and saves rank 0's model; from main_worker on this is the code that
``asr_train --ngpu N`` runs on GPUs in the N processes it spawns (with nccl, one GPU each).
A small wrapper around ESPnet's trainer records, per rank, the training utterances it saw
and its final model state, which ESPnet itself only saves for rank 0.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from espnet_run import asr_train_args, run_module, synth_dataset

ENCODER_CONF = {
    "output_size": 32,
    "attention_heads": 2,
    "linear_units": 64,
    "num_blocks": 2,
    "qkv_conv_kernel": 5,
    "dropout_rate": 0.0,
    "sync_norm": True,
}
CONFIG = {
    "encoder": "iml_spikeformer",
    "encoder_conf": ENCODER_CONF,
    "frontend_conf": {"n_fft": 512, "hop_length": 160},
    "normalize": "utterance_mvn",
    "decoder": "transformer",
    "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1},
    "model_conf": {"ctc_weight": 0.3},
    "optim": "adam",
    "optim_conf": {"lr": 0.002},
    "max_epoch": 2,
    "batch_type": "unsorted",
    "batch_size": 3,  # 6 utterances: 2 batches of 3, each split 2 + 1 between the ranks
    "num_att_plot": 0,
    "use_matplotlib": False,  # per-epoch plots cost seconds
    "use_tensorboard": False,
    "num_workers": 0,
    "seed": 0,
}

# ESPnet's training command, with the trainer wrapped to dump what each rank did.
WORKER = """
import os, sys, torch
import espnet_iml
from espnet2.train.trainer import Trainer

dump = os.environ["IML_RANK_DUMP"]
seen = []
_run = Trainer.__dict__["run"].__func__
_one = Trainer.__dict__["train_one_epoch"].__func__

def train_one_epoch(cls, *, iterator, **kwargs):
    def recorded():
        for utt_id, batch in iterator:
            seen.extend(utt_id)
            yield utt_id, batch
    return _one(cls, iterator=recorded(), **kwargs)

def run(cls, **kwargs):
    _run(cls, **kwargs)
    dist = torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if dist else 0
    torch.save({"world": torch.distributed.get_world_size() if dist else 1, "seen": seen,
                "state": kwargs["model"].state_dict()}, dump.format(rank=rank))

Trainer.train_one_epoch = classmethod(train_one_epoch)
Trainer.run = classmethod(run)
from espnet_iml.bin.launch import launch
launch("espnet2.bin.asr_train")
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synth_dataset(tmp_path_factory.mktemp("spoken"))


def test_two_process_training_all_reduces_gradients_and_decodes(data, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    exp = tmp_path / "exp"
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    dist = ["--dist_backend", "gloo", "--dist_world_size", "2",
            "--dist_init_method", f"file://{tmp_path}/dist_init"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               IML_RANK_DUMP=str(tmp_path / "rank{rank}.pth"))
    logs = [tmp_path / f"rank{r}.log" for r in range(2)]
    procs = [subprocess.Popen([sys.executable, str(worker), *asr_train_args(data, config, exp),
                               *dist, "--dist_rank", str(r)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=logs[r].open("w"))
             for r in range(2)]
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, code in enumerate(codes):
        assert code == 0, f"rank {r} failed:\n{logs[r].read_text()[-5000:]}"

    ranks = [torch.load(tmp_path / f"rank{r}.pth") for r in range(2)]
    assert [d["world"] for d in ranks] == [2, 2]
    # The ranks trained on different utterances (ESPnet shards each batch) ...
    seen = [set(d["seen"]) for d in ranks]
    assert seen[0] and seen[1] and not seen[0] & seen[1], seen
    assert seen[0] | seen[1] == {line.split()[0] for line in
                                 Path(data["wav.scp"]).read_text().splitlines()}
    # ... yet end with identical parameters: DDP all-reduced the gradients (replacing DDP by
    # the bare model makes every parameter differ). Buffers agree too: DDP copies rank 0's
    # to the other ranks at each forward (so they would agree without sync_norm as well).
    states = [d["state"] for d in ranks]
    assert states[0].keys() == states[1].keys()
    differ = [k for k in states[0] if not torch.equal(states[0][k], states[1][k])]
    assert not differ, differ
    # ESPnet saved rank 0's model, which is what was dumped.
    saved = torch.load(exp / f"{CONFIG['max_epoch']}epoch.pth")
    assert saved.keys() == states[0].keys()
    assert all(torch.equal(saved[k], states[0][k]) for k in saved)
    assert ":0/2]" in logs[0].read_text()  # ESPnet's rank-tagged log format

    out = tmp_path / "decode"
    run_module("espnet_iml.bin.asr_inference",
               ["--asr_train_config", exp / "config.yaml",
                "--asr_model_file", exp / "valid.acc.ave.pth",
                "--data_path_and_name_and_type", f"{data['wav.scp']},speech,sound",
                "--output_dir", out, "--ngpu", 0, "--batch_size", 1, "--beam_size", 2,
                "--maxlenratio", 0.3], cwd=tmp_path)
    hyps = (out / "1best_recog" / "text").read_text().splitlines()
    assert sorted(h.split(maxsplit=1)[0] for h in hyps) == sorted(seen[0] | seen[1])
