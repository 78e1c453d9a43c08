"""The numbers of one trained and decoded experiment (a model at one seed), from its files.

An experiment directory is what egs2/TEMPLATE/asr1/asr.sh writes under ``asr_<tag>/``:

* error rates: ``<decode dir>/<test set>/score_{wer,cer}/score.json`` (stage 9), the
  ``err`` field, in percent;
* parameters: ESPnet's ``Total Number of model parameters: 2.35 M`` line in ``train.log``
  (three significant digits, enough for a +-10 % size check), replaced by the exact count
  of the model built from its config (``compare sizes --out_json``) where the two agree;
* training time: the ``time=`` fields (train and validation) of the last
  ``<N>epoch results`` line of every epoch in ``train.log`` (an epoch reported twice, after a
  resume, counts once), so start-up and checkpoint averaging are left out;
* decoding real-time factor: from the decoding logs ``<decode dir>/logdir/asr_inference.*.log``
  (stage 8). ESPnet logs ``speech length: <frames>`` at the start of every utterance; per log,
  the decoding time is from the first such line to the log's last timestamped line (model
  loading before it is left out), the audio is the frames times the 10 ms frame shift of
  espnet_iml.recipe.fbank. RTF = decoding time / audio, summed over the logs: seconds of one
  CPU thread (asr.sh decodes with OMP_NUM_THREADS=1 per job) per second of speech, with the
  beam search of the decoding config, batch 1;
* for the spiking encoder, the theoretical energy report of stage 11
  (``<decode dir>/energy/energy.json``, espnet_iml.bin.energy): the encoder's ANN/SNN energy
  ratio under the strict convention (the generous one for files written before it existed)
  and the mean spike count of its neurons' outputs.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_iml.recipe.common import RecipeError, log
from espnet_iml.recipe.fbank import FRAME_SHIFT_MS

Key = Tuple[str, str]  # (test set, metric: "WER" or "CER")

_PARAMS = re.compile(r"Total Number of model parameters:\s*([0-9.]+)\s*([KMBT]?)")
_SCALE = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
_EPOCH = re.compile(r"(\d+)epoch results: (.*)")
_TIME_FIELD = re.compile(r"(?<![a-z_])time=([^,]+)(?:,|$)")
_DURATION = re.compile(r"([0-9.]+) (hour|minute|second)")
_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")
_SPEECH = re.compile(r"INFO: speech length: (\d+)")


@dataclass
class Run:
    """One experiment: a model trained at one seed, decoded (None where not measured)."""

    model: str
    seed: int
    exp: Path
    decode: Optional[str] = None
    errors: Dict[Key, float] = field(default_factory=dict)
    params: Optional[float] = None
    train_seconds: Optional[float] = None
    epochs: Optional[int] = None
    decode_seconds: Optional[float] = None
    audio_seconds: Optional[float] = None
    energy_ratio: Optional[float] = None
    spike_count: Optional[float] = None

    @property
    def rtf(self) -> Optional[float]:
        if self.decode_seconds is None or not self.audio_seconds:
            return None
        return self.decode_seconds / self.audio_seconds


def model_parameters(train_log: str) -> Optional[float]:
    """The last "Total Number of model parameters" of a train.log, as a number."""
    found = _PARAMS.findall(train_log)
    if not found:
        return None
    value, unit = found[-1]
    return float(value) * _SCALE[unit]


def exact_parameters(runs: List[Run], counts: Dict[str, float]) -> List[str]:
    """Give each run the exact parameter count of its model's config (``counts``, from
    building the model) instead of train.log's rounded one, where the two agree to 1 %.

    The rounded counts can move a size difference by half a percent point (2.40 M against
    2.56 M is +6.7 %; exactly it is +6.3 %). A run whose train.log disagrees was trained with
    another model than its config (``--asr_args`` changed it): it keeps its own count, and the
    returned warnings say so.
    """
    warnings = []
    for run in runs:
        n = counts.get(run.model)
        if n is None:
            continue
        if run.params is not None and abs(run.params - n) > 0.01 * n:
            warnings.append(f"{run.model} seed {run.seed}: train.log counts {run.params / 1e6:.2f} M "
                            f"parameters, its config {n / 1e6:.3f} M: the run was trained with "
                            "another model than its config; its own count is reported")
            continue
        run.params = n
    return warnings


def humanized_seconds(text: str) -> float:
    """ESPnet's durations: "1 minute and 25.4 seconds", "27.5 seconds", "2 hours, ..."."""
    unit = {"hour": 3600.0, "minute": 60.0, "second": 1.0}
    return sum(float(n) * unit[u] for n, u in _DURATION.findall(text))


def training_seconds(train_log: str) -> Tuple[Optional[float], Optional[int]]:
    """(train + validation seconds over all epochs, last epoch) from a train.log."""
    per_epoch: Dict[int, float] = {}
    for m in _EPOCH.finditer(train_log):
        per_epoch[int(m.group(1))] = sum(humanized_seconds(t) for t in _TIME_FIELD.findall(m.group(2)))
    if not per_epoch:
        return None, None
    return sum(per_epoch.values()), max(per_epoch)


def _stamp(line: str) -> Optional[datetime]:
    m = _STAMP.search(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f") if m else None


def decoding_time(logdir: Path) -> Tuple[Optional[float], Optional[float]]:
    """(decoding seconds, audio seconds) summed over ``logdir/asr_inference.*.log``."""
    total_s, total_audio = 0.0, 0.0
    found = False
    for path in sorted(logdir.glob("asr_inference.*.log")):
        first: Optional[datetime] = None
        last: Optional[datetime] = None
        frames = 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            t = _stamp(line)
            if t is None:
                continue
            m = _SPEECH.search(line)
            if m:
                frames += int(m.group(1))
                if first is None:
                    first = t
            if first is not None:
                last = t
        if first is None or last is None:
            continue
        found = True
        total_s += (last - first).total_seconds()
        total_audio += frames * FRAME_SHIFT_MS / 1000.0
    return (total_s, total_audio) if found else (None, None)


def error_rates(decode_dir: Path) -> Dict[Key, float]:
    """{(test set, "WER"/"CER"): err %} of every score.json in a decoding directory."""
    out: Dict[Key, float] = {}
    for path in sorted(decode_dir.glob("*/score_*/score.json")):
        s = json.loads(path.read_text())
        metric = str(s.get("metric") or path.parent.name.replace("score_", "")).upper()
        out[(path.parents[1].name, metric)] = float(s["err"])
    return out


def energy_numbers(decode_dir: Path) -> Tuple[Optional[float], Optional[float]]:
    """(encoder ANN/SNN energy ratio, encoder mean spike count) from stage 11's energy.json;
    (None, None) without one, or for an encoder with no spiking layers."""
    path = decode_dir / "energy" / "energy.json"
    if not path.is_file():
        return None, None
    d = json.loads(path.read_text())
    enc = d.get("settings", {}).get(d.get("primary"), {}).get("totals", {}).get("encoder", {})
    count = enc.get("mean_count_neurons")
    if count is None:  # no spiking layer (a baseline): its ANN/SNN ratio of 1 says nothing
        return None, None
    # The strict convention (every multiply with a real operand is a MAC, counted from the
    # spike-driven execution) is the headline; energy files written before it existed carry
    # only the generous ratio.
    ratio = d.get("energy_ratio_encoder_strict", d.get("energy_ratio_encoder"))
    return ratio, count


def decode_dirs(exp: Path) -> List[Path]:
    """Decoding directories of an experiment that hold scores, newest scores first."""
    dirs = {p.parents[2] for p in exp.glob("*/*/score_*/score.json")}
    return sorted(dirs, key=lambda d: max(p.stat().st_mtime for p in d.glob("*/score_*/score.json")),
                  reverse=True)


def collect_run(model: str, seed: int, exp: Path, decode: Optional[str] = None) -> Run:
    """Everything measured for one experiment; a run without scores has ``errors`` empty.

    ``decode`` names the decoding directory to report; by default the newest one, as stages
    8-9 last wrote it (a later probe decoding, e.g. of dev only, would then win: name the
    one you mean).
    """
    run = Run(model=model, seed=seed, exp=exp)
    log_path = exp / "train.log"
    if log_path.is_file():
        text = log_path.read_text(encoding="utf-8", errors="replace")
        run.params = model_parameters(text)
        run.train_seconds, run.epochs = training_seconds(text)
    dirs = decode_dirs(exp)
    if decode is not None and dirs:
        chosen = [d for d in dirs if d.name == decode]
        if not chosen:
            raise RecipeError(f"{exp}: no scored decoding named {decode}; scored ones: "
                              + " ".join(d.name for d in dirs))
        dirs = chosen
    if dirs:
        d = dirs[0]
        run.decode = d.name
        run.errors = error_rates(d)
        run.decode_seconds, run.audio_seconds = decoding_time(d / "logdir")
        run.energy_ratio, run.spike_count = energy_numbers(d)
    return run


def collect_runs(triples, decode: Optional[str] = None, tool: str = "compare"
                 ) -> Tuple[List[Run], List[str]]:
    """The runs of ``--run MODEL SEED EXP_DIR`` triples, and the models in first-seen order.
    A missing experiment is warned about and left without scores."""
    runs, models = [], []
    for model, seed, exp in triples:
        if not seed.isdigit():
            raise RecipeError(f"--run {model} {seed} {exp}: the seed must be a number")
        if not Path(exp).is_dir():
            log(tool, f"warning: {exp} does not exist (not trained yet?); left out")
        runs.append(collect_run(model, int(seed), Path(exp), decode))
        if model not in models:
            models.append(model)
    return runs, models
