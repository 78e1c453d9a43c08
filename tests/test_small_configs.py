"""The shared small-data recipe of conf/train_asr_*_small.yaml, as ESPnet runs it.

The learning rate must warm up to each config's peak and reach zero exactly at the last
update of the budget (max_epoch x num_iters_per_epoch). ESPnet's piecewiselinearwarmuplr
takes its peak from the list, not from optim_conf, and past the list's end it returns to an
inverse square-root decay from the peak: a budget changed without the list would silently
train its last epochs at a high rate again.
"""

from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "conf").glob("train_asr_*_small.yaml"))
SHARED = ("batch_type", "batch_size", "num_iters_per_epoch", "max_epoch", "grad_clip", "specaug",
          "model_conf", "keep_nbest_models", "best_model_criterion", "scheduler")


def lr_per_update(cfg: dict) -> list:
    """The learning rate of every update, from ESPnet's own scheduler class."""
    from espnet2.tasks.abs_task import scheduler_classes

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], **cfg["optim_conf"])
    sched = scheduler_classes[cfg["scheduler"]](opt, **cfg["scheduler_conf"])
    rates = []
    for _ in range(cfg["max_epoch"] * cfg["num_iters_per_epoch"]):
        rates.append(opt.param_groups[0]["lr"])   # the rate this update is taken with
        opt.step()
        sched.step()   # ESPnet steps batch schedulers after every update
    return rates


def test_there_are_three_models():
    assert {p.name for p in CONFIGS} >= {"train_asr_iml_spikeformer_small.yaml",
                                         "train_asr_conformer_small.yaml",
                                         "train_asr_transformer_small.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_rate_warms_up_to_the_peak_and_ends_at_zero_with_the_budget(path):
    cfg = yaml.safe_load(path.read_text())
    peak = cfg["optim_conf"]["lr"]
    warmup = cfg["scheduler_conf"]["warmup_steps_list"][1]
    rates = lr_per_update(cfg)
    updates = len(rates)
    # Warm-up: linear from 0 (update k has rate peak * (k + 1) / warmup), peak at the end.
    for k in (0, warmup // 2, warmup - 1):
        assert rates[k] == pytest.approx(peak * (k + 1) / warmup, rel=1e-9)
    # Then linear to zero at the last update: rate = peak * (updates - k - 1) / (updates - warmup).
    for k in (warmup, updates // 2, updates - 2, updates - 1):
        assert rates[k] == pytest.approx(peak * (updates - k - 1) / (updates - warmup), rel=1e-9)
    assert rates[-1] == 0.0   # the last update has nothing left to anneal
    assert max(rates) == pytest.approx(peak)
    assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1:]))


def test_the_recipe_is_shared():
    cfgs = {p.stem: yaml.safe_load(p.read_text()) for p in CONFIGS}
    first = next(iter(cfgs.values()))
    for name, cfg in cfgs.items():
        for key in SHARED:
            assert cfg.get(key) == first.get(key), f"{name}: {key}"
        assert cfg["scheduler_conf"]["warmup_steps_list"] == first["scheduler_conf"]["warmup_steps_list"]
