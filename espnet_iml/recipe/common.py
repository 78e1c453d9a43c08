"""Pieces shared by the recipe tools: errors, messages, done-stamps and process pools."""

import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class RecipeError(Exception):
    """A problem the user must fix; its message says what was expected and how to fix it."""


def log(tool: str, msg: str) -> None:
    print(f"[{tool}] {msg}", flush=True)


def run_cli(tool: str, body: Callable[[], int]) -> int:
    """Run ``body``; a RecipeError becomes one clear line on stderr and exit status 1."""
    try:
        return body()
    except RecipeError as exc:
        print(f"[{tool}] ERROR: {exc}", file=sys.stderr, flush=True)
        return 1


def need_file(path: Path, what: str, producer: str) -> Path:
    """Fail clearly when an input of the tool is missing, naming what produces it."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path} ({what}) does not exist: it is produced by {producer}; run that first")
    return path


# How the stage driver (egs2/TEMPLATE/asr1/asr.sh) produces each input: used in messages.
PRODUCERS = {
    "data": "data preparation (asr.sh stage 1: local/data.sh with prep_aishell or "
            "prep_librispeech), or speed_perturb (asr.sh stage 2)",
    "raw": "espnet_iml.recipe.format_audio (asr.sh stage 3)",
    "feats": "espnet_iml.recipe.fbank (asr.sh stage 4)",
    "hyp": "decoding (asr.sh stage 8)",
    "score": "espnet_iml.recipe.score (asr.sh stage 9)",
}


class Skips:
    """Utterances left out by a tool, with their reasons; reported, never silently lost."""

    def __init__(self) -> None:
        self.items: List[Tuple[str, str]] = []

    def add(self, key: str, reason: str) -> None:
        self.items.append((key, reason))

    def __len__(self) -> int:
        return len(self.items)

    def by_reason(self) -> "OrderedDict[str, List[str]]":
        out: "OrderedDict[str, List[str]]" = OrderedDict()
        for key, reason in self.items:
            out.setdefault(reason, []).append(key)
        return out

    def report(self, tool: str, what: str = "utterance", path: Optional[Path] = None,
               shown: int = 5, verb: str = "skipped") -> None:
        """Print counts per reason with a few ids; write every (id, reason) to ``path``."""
        if path is not None:
            from espnet_iml.recipe.kvfile import write_dict  # avoid an import cycle

            if self.items:
                write_dict(path, [(k, r) for k, r in self.items], sort=False)
            else:
                Path(path).unlink(missing_ok=True)
        if not self.items:
            return
        where = f" (full list: {path})" if path is not None else ""
        log(tool, f"{verb} {len(self.items)} {what}(s){where}:")
        for reason, keys in self.by_reason().items():
            more = f", ... ({len(keys) - shown} more)" if len(keys) > shown else ""
            log(tool, f"  {len(keys)} x {reason}: {', '.join(keys[:shown])}{more}")


def file_signature(paths: Iterable[Path]) -> List[List[object]]:
    """(path, size, mtime) of each file: enough to tell that an input changed."""
    out = []
    for p in paths:
        p = Path(p)
        st = p.stat() if p.exists() else None
        out.append([str(p), st.st_size if st else None, st.st_mtime_ns if st else None])
    return out


class Stamp:
    """``<out>/.done-<tool>``: written last, when an output directory is complete.

    It records the tool's parameters and the size and time of its input files; a re-run
    with the same ones finds it and does nothing.
    """

    def __init__(self, out_dir: Path, tool: str, params: dict, inputs: Sequence[Path]):
        self.path = Path(out_dir) / f".done-{tool}"
        self.content = {"params": params, "inputs": file_signature(inputs)}

    def _digest(self) -> str:
        blob = json.dumps(self.content, sort_keys=True, default=str).encode()
        return hashlib.sha1(blob).hexdigest()

    def is_done(self) -> bool:
        if not self.path.is_file():
            return False
        try:
            return json.loads(self.path.read_text()).get("digest") == self._digest()
        except (OSError, ValueError):
            return False

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def mark(self) -> None:
        from espnet_iml.recipe.kvfile import atomic_write_text

        data = dict(self.content, digest=self._digest(), time=time.strftime("%Y-%m-%dT%H:%M:%S"))
        atomic_write_text(self.path, json.dumps(data, indent=1, default=str) + "\n")


def _init_worker() -> None:
    # One thread per worker process: the jobs are the parallelism. Read by torch when a
    # worker first imports it (the workers are fresh interpreters).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def imap(func: Callable[[T], R], items: Sequence[T], nj: int) -> Iterator[R]:
    """func over items, results in completion order; ``nj`` > 1 uses worker processes.

    Workers are spawned (not forked) so that a parent that already imported torch cannot
    deadlock them; ``func`` must be a module-level function.
    """
    nj = max(1, min(nj, len(items)))
    if nj == 1:
        for item in items:
            yield func(item)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(nj, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(func, items)


def chunks(items: Sequence[T], n: int) -> List[List[T]]:
    """``items`` cut into ``n`` contiguous, nearly equal, non-empty pieces."""
    n = max(1, min(n, len(items)))
    out, start = [], 0
    for i in range(n):
        end = start + (len(items) - start) // (n - i)
        out.append(list(items[start:end]))
        start = end
    return out
