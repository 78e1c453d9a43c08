"""Before a training resumes: is it the same training as the one that left the checkpoint?

    python -m espnet_iml.recipe.resume_check --previous exp/x/config.yaml -- <training arguments>

ESPnet resumes from ``<output_dir>/checkpoint.pth`` whatever the new command says: with another
config (a CTC weight, a learning rate, a seed), the finished epochs of the old recipe and the
new ones are mixed, or a finished model of the old recipe is decoded as if it were the new one.
asr.sh stage 7 calls this first (ours; ESPnet has no such check). It parses the training
arguments with ESPnet's own parser, config file included, as the training would, and compares
the result with the config.yaml that ESPnet wrote for the run being resumed.

Keys that may change between an interrupted run and its resumption without changing what is
trained (RESUME_SAFE: the number of epochs, hardware, logging, the config file's path) are
not compared. The token list is compared by content, as ESPnet stores it in config.yaml;
paths are compared by where they lead from the current folder, not by spelling.

Exit status: 0 the same training; 3 a different one (the differing keys are printed, one
``  key: previous -> now`` line each); anything else: the check itself failed (an unreadable
file, an option ESPnet's parser rejects), and the training would not run either.
"""

import argparse
import contextlib
import importlib
import io
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

import yaml

# Options that say how long, where and on what the training runs, not what it learns.
RESUME_SAFE = frozenset({
    "config", "output_dir", "resume", "max_epoch", "version", "print_config", "dry_run",
    "ngpu", "num_workers", "distributed",
    "dist_backend", "dist_init_method", "dist_world_size", "dist_rank", "local_rank",
    "dist_master_addr", "dist_master_port", "dist_launcher", "multiprocessing_distributed",
    "unused_parameters", "sharded_ddp", "use_deepspeed", "deepspeed_config",
    "cudnn_enabled", "cudnn_benchmark", "cudnn_deterministic",
    "log_interval", "log_level", "num_att_plot", "detect_anomaly", "use_matplotlib",
    "use_tensorboard", "create_graph_in_tensorboard", "use_wandb", "wandb_project",
    "wandb_id", "wandb_entity", "wandb_name", "wandb_model_log_interval",
    "keep_nbest_models", "nbest_averaging_interval", "patience",
})

DIFFERENT = 3  # exit status: not 1, which Python gives to any uncaught error
TASKS = {"asr": "espnet2.tasks.asr:ASRTask", "lm": "espnet2.tasks.lm:LMTask"}


def training_config(task: str, argv: List[str]) -> Dict[str, Any]:
    """The config ESPnet's training would write for ``argv``, as config.yaml holds it."""
    import espnet_iml  # noqa: F401  (registers iml_spikeformer among the encoders)
    from espnet_iml.bin.launch import quiet_nltk

    quiet_nltk()
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    module, name = TASKS[task].split(":")
    with contextlib.redirect_stdout(io.StringIO()):  # import notes, not ours to show
        task_class = getattr(importlib.import_module(module), name)
    args = task_class.get_parser().parse_args(argv)
    # What build_model does to the arguments before ESPnet writes config.yaml.
    if isinstance(args.token_list, str):
        with open(args.token_list, encoding="utf-8") as f:
            args.token_list = [line.rstrip() for line in f]
    if task == "asr" and args.input_size is not None:  # features given: no frontend
        args.frontend, args.frontend_conf = None, {}
    # Through YAML, so that tuples, paths and numbers compare as config.yaml holds them.
    return yaml.safe_load(yaml_no_alias_safe_dump(vars(args), sort_keys=False))


ABSENT = object()  # a key one of the two configs does not have (another ESPnet version)


def same(old: Any, new: Any) -> bool:
    """Equal values; two strings also when they name the same path from here.

    One run may be started with absolute paths (``compare.sh --workdir``) and resumed with
    relative ones from the work folder: the data are the same, the strings are not.
    """
    if isinstance(old, str) and isinstance(new, str):
        return old == new or os.path.realpath(old) == os.path.realpath(new)
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(same(old[k], new[k]) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(same(o, n) for o, n in zip(old, new))
    return old == new


def differences(previous: Dict[str, Any], now: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
    """(key, previous value, value now) for every compared key whose value changed."""
    keys = sorted((set(previous) | set(now)) - RESUME_SAFE)
    pairs = ((k, previous.get(k, ABSENT), now.get(k, ABSENT)) for k in keys)
    return [(k, old, new) for k, old, new in pairs if not same(old, new)]


def short(value: Any, width: int = 70) -> str:
    """One line of YAML flow style, cut at ``width`` characters."""
    if value is ABSENT:
        return "(absent)"
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    if text.endswith("\n..."):  # how YAML ends a document that is one scalar
        text = text[:-3].strip()
    return text if len(text) <= width else text[:width - 3] + "..."


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Exit 3 (and list the differences) if the training arguments after -- "
                    "would train something other than the run whose config.yaml is given.")
    p.add_argument("--previous", required=True, help="config.yaml of the run to be resumed")
    p.add_argument("--task", choices=sorted(TASKS), default="asr")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="-- then the arguments of espnet_iml.bin.<task>_train")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    a = get_parser().parse_args(argv)
    train_args = a.train_args[1:] if a.train_args[:1] == ["--"] else a.train_args
    with open(a.previous, encoding="utf-8") as f:
        previous = yaml.safe_load(f) or {}
    diff = differences(previous, training_config(a.task, train_args))
    for key, old, new in diff:
        print(f"  {key}: {short(old)} -> {short(new)}")
    return DIFFERENT if diff else 0


if __name__ == "__main__":
    sys.exit(main())
