"""Training progress on screen, read from ESPnet's training log as it is written.

    <training command> 2>&1 | tee -a exp/x/train.log | \
        python -m espnet_iml.recipe.progress --config exp/x/config.yaml

ESPnet writes one ``<N>epoch:train:<a>-<b>batch: ..., loss=...`` line every ``log_interval``
batches and one ``<N>epoch results: [train] ... [valid] ... acc=...`` line per epoch, into a log
that asr.sh keeps off the screen. This filter turns them into short lines:

    epoch 2/30, batch 40/120: train loss 61.2 (elapsed 1m05s, ETA 14m10s)
    epoch 2/30: train loss 58.7, valid loss 60.1, valid acc 0.312 (elapsed 1m50s, ETA 13m20s)

The number of epochs comes from ``max_epoch`` in the config.yaml that ESPnet writes when
training starts. ETA: the time per batch so far in this run times the batches left; it appears once an
epoch has ended (ESPnet's running iteration count then gives the batches per epoch). Other lines are dropped, except resume notes and errors.
Ours: ESPnet has no such summary. The filter never fails; a bad line is skipped, so that it
cannot stop the training that feeds it.
"""

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, TextIO

_STEP = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch: (.*)")
_EPOCH = re.compile(r"(\d+)epoch results: (.*)")
_PAIR = re.compile(r"(\w+)=([^,\[]+)")
_SECTION = re.compile(r"\[(\w+)\] ([^\[]*)")
_KEEP = re.compile(r"The training was resumed|has already reached|Traceback|Error|"
                   r"Total Number of model parameters")
_MAX_EPOCH = re.compile(r"^max_epoch:\s*(\d+)\s*$", re.M)


def clock(seconds: float) -> str:
    """62 -> '1m02s', 3700 -> '1h01m40s'."""
    s = int(round(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def pairs(text: str) -> Dict[str, str]:
    return {k: v.strip() for k, v in _PAIR.findall(text)}


def number(value: Optional[str]) -> Optional[str]:
    """ESPnet's formatted float, shortened; None when absent or not a number."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


class Progress:
    """Turns ESPnet log lines into progress lines; ``now`` is a clock (for tests)."""

    def __init__(self, config: Optional[Path] = None, max_epoch: Optional[int] = None,
                 now: Callable[[], float] = time.monotonic):
        self.config, self.max_epoch, self.now = config, max_epoch, now
        self.t0 = now()
        self.per_epoch: Optional[int] = None  # batches per epoch, from ESPnet's total_count
        self.first_epoch: Optional[int] = None  # the first epoch of this run (after a resume)

    def total_epochs(self) -> str:
        if self.max_epoch is None and self.config is not None:
            try:
                m = _MAX_EPOCH.search(Path(self.config).read_text(encoding="utf-8"))
                self.max_epoch = int(m.group(1)) if m else None
            except OSError:
                pass
        return str(self.max_epoch) if self.max_epoch else "?"

    def timing(self, epoch: int, batch: int) -> str:
        """'elapsed ..., ETA ...' after ``batch`` batches of ``epoch``."""
        elapsed = self.now() - self.t0
        out = f"elapsed {clock(elapsed)}"
        b, first = self.per_epoch, self.first_epoch
        if b and first is not None and self.total_epochs() != "?":
            position = (epoch - 1) * b + batch
            done = position - (first - 1) * b
            left = self.max_epoch * b - position  # type: ignore[operator]
            if done > 0 and left >= 0:
                out += f", ETA {clock(elapsed / done * left)}"
        return out

    def line(self, text: str) -> Optional[str]:
        """The progress line for one log line, or None."""
        m = _EPOCH.search(text)
        if m:
            epoch = int(m.group(1))
            sections = {k: pairs(v) for k, v in _SECTION.findall(m.group(2))}
            train, valid = sections.get("train", {}), sections.get("valid", {})
            if self.first_epoch is None:
                self.first_epoch = epoch
            total = train.get("total_count", "")
            if total.isdigit() and epoch > 0:  # iterations since the start of training
                self.per_epoch = int(total) // epoch
            parts = [f"{name} {key.replace('_', ' ')} {v}"
                     for name, d, keys in (("train", train, ("loss",)), ("valid", valid, ("loss",)))
                     for key in keys if (v := number(d.get(key)))]
            # Validation accuracy (attention decoder), else the CTC error of a CTC-only model.
            for key in ("acc", "cer_ctc"):
                if (v := number(valid.get(key))):
                    parts.append(f"valid {key.replace('_', ' ')} {v}")
                    break
            return (f"epoch {epoch}/{self.total_epochs()}: " + ", ".join(parts)
                    + f" ({self.timing(epoch, self.per_epoch or 0)})")
        m = _STEP.search(text)
        if m:
            epoch, end = int(m.group(1)), int(m.group(3))
            if self.first_epoch is None:
                self.first_epoch = epoch
            loss = number(pairs(m.group(4)).get("loss"))
            of = f"/{self.per_epoch}" if self.per_epoch else ""
            return (f"epoch {epoch}/{self.total_epochs()}, batch {end}{of}: train loss {loss or '?'}"
                    f" ({self.timing(epoch, end)})")
        if _KEEP.search(text):
            return text.rstrip()
        return None


def follow(stream: TextIO, out: TextIO, progress: Progress, indent: int = 0) -> None:
    """Print a progress line for every known line of ``stream`` until it ends."""
    for text in stream:
        try:
            msg = progress.line(text)
        except Exception:  # noqa: BLE001 - never stop the training that feeds this filter
            msg = None
        if msg:
            print(" " * indent + msg, file=out, flush=True)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_iml.recipe.progress",
        description="Short progress lines (per logged step and per epoch) from ESPnet's training log on stdin.",
    )
    p.add_argument("--config", type=Path, help="the experiment's config.yaml (for max_epoch)")
    p.add_argument("--max_epoch", type=int, help="number of epochs (instead of --config)")
    p.add_argument("--indent", type=int, default=0, help="spaces before each line")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    follow(sys.stdin, sys.stdout, Progress(args.config, args.max_epoch), args.indent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
