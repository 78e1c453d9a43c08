"""Paper-scale training measurements for a GPU (issue 13): step time, peak memory and
throughput of IML-Spikeformer and ESPnet's Conformer in fp32 and under bf16 autocast, and
whether bf16 autocast changes the IMLS spike counts. Reporting: espnet_iml.bench.gpu_report;
command line: espnet_iml.bin.gpu_benchmark (local/gpu_benchmark.sh).

IMLS under bf16 (ours): a spike count is a rounding of U / theta, and bf16 keeps 8
significant bits, so a threshold or a division in bf16 would move counts at every rounding
boundary. The neuron therefore always computes its threshold, division, rounding and clamp
in fp32, also under autocast (IMLSNeuron._fire and espnet_iml.fused turn autocast off and
upcast their input). Given the same U, the counts are then exactly the fp32 counts
(``neuron_autocast_check``, asserted). The synaptic layers before a neuron do run in bf16
under autocast, which changes U itself by bf16 rounding; ``model_count_agreement`` reports
how many counts that moves (a property of bf16 matmuls, not of the neuron).
"""

import argparse
import contextlib
import gc
import statistics
import time
from typing import Dict, List, Optional

import torch

from espnet_iml.bench.models import PAPER, build_encoder, encoder_with_ctc, make_batch

SIZES = {s["name"]: dict(s) for s in PAPER}
# --dry-run: every code path at toy size, on a CPU, in seconds
TINY = dict(name="2x32", output_size=32, heads=2, linear_units=64, num_blocks=2, kernel=5,
            conformer_kernel=5, vocab=20, decoder_blocks=1)
ROWS = ("iml_spikeformer", "conformer")
PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """bf16 autocast for ``precision == "bf16"``, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_args(cfg: argparse.Namespace, seed: int) -> argparse.Namespace:
    """The fields the builders of espnet_iml.bench.models read."""
    return argparse.Namespace(spike_levels=cfg.spike_levels, timesteps=4,
                              frontend_channels=cfg.frontend_channels, seed=seed,
                              batch=cfg.batch, seconds=cfg.seconds, feats_scp=None)


def measure_step(row: str, size: dict, precision: str, cfg: argparse.Namespace) -> dict:
    """Median wall time of a training step (encoder + CTC head, Adam), peak memory and
    throughput (seconds of audio per second) of one model at one precision."""
    device = torch.device(cfg.device)
    args = _model_args(cfg, cfg.seed)
    enc, ctc, opt = encoder_with_ctc(row, size, args, device, lr=1e-4)
    params = sum(p.numel() for p in enc.parameters())
    xs, lens, ys, ylens = make_batch(args, size["vocab"], device)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            out, olens, _ = enc(xs, lens)
            loss = ctc(out.float(), olens, ys, ylens)
        loss.backward()
        opt.step()
        return float(loss.detach())

    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times, losses = [], []
    for i in range(cfg.warmup + cfg.steps):
        _sync(device)
        t0 = time.perf_counter()
        losses.append(step())
        _sync(device)
        if i >= cfg.warmup:
            times.append(time.perf_counter() - t0)
    mem = None
    if device.type == "cuda":
        mem = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    med = statistics.median(times)
    audio = float(lens.sum()) / 100.0  # 10 ms frames
    res = dict(row=row, size=size["name"], precision=precision, params=params,
               step_s_median=med, step_s=times, peak_mem_mb=mem,
               audio_s_per_s=audio / med, frames_per_s=float(lens.sum()) / med,
               batch=list(xs.shape), final_loss=losses[-1], device=str(device))
    del enc, ctc, opt
    _release(device)
    return res


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def neuron_autocast_check(device: torch.device, seed: int = 0, n: int = 4096) -> dict:
    """Counts of an IMLS neuron under bf16 autocast against fp32, for (a) the same fp32
    input and (b) a bf16 input (what a bf16 matmul hands it): the neuron works in fp32, so
    (a) must match exactly and (b) must equal the fp32 counts of the same bf16 values."""
    from espnet_iml.imls import IMLSNeuron

    g = torch.Generator().manual_seed(seed)
    u = (torch.randn(8, n // 8, 64, generator=g) * 3).to(device)
    neuron = IMLSNeuron(levels=4, threshold_init=0.9).to(device)
    with torch.no_grad():
        ref, _ = neuron.fire(u)
        with autocast(device, "bf16"):
            same, _ = neuron.fire(u)
        ub = u.to(torch.bfloat16)
        ref_b, _ = neuron.fire(ub.float())
        with autocast(device, "bf16"):
            got_b, _ = neuron.fire(ub)
    return dict(same_input_mismatch=float((same != ref).float().mean()),
                bf16_input_mismatch=float((got_b != ref_b).float().mean()),
                positions=u.numel())


def model_count_agreement(size: dict, cfg: argparse.Namespace) -> dict:
    """Every IMLS neuron's counts in one forward pass (eval, same weights and batch) under
    bf16 autocast against fp32: fraction of valid positions whose count differs, overall
    and per neuron (bf16 matmuls change U; the neuron itself rounds in fp32)."""
    from espnet_iml.imls import IMLSNeuron

    device = torch.device(cfg.device)
    args = _model_args(cfg, cfg.seed)
    torch.manual_seed(cfg.seed)
    enc = build_encoder("iml_spikeformer", size, args).to(device).eval()
    xs, lens, _, _ = make_batch(args, size["vocab"], device)
    neurons = {n: m for n, m in enc.named_modules() if isinstance(m, IMLSNeuron)}
    counts: Dict[str, Dict[str, torch.Tensor]] = {}
    for m in neurons.values():
        m.recording = True
    try:
        for precision in PRECISIONS:
            with torch.no_grad(), autocast(device, precision):
                enc(xs, lens)
            counts[precision] = {n: m.last_counts for n, m in neurons.items()}
    finally:
        for m in neurons.values():
            m.recording, m.last_counts = False, None
    per, diff, total = {}, 0, 0
    for name in neurons:
        a, b = counts["fp32"][name], counts["bf16"][name]
        d = int((a != b).sum())
        per[name] = d / max(a.numel(), 1)
        diff += d
        total += a.numel()
    worst = max(per, key=per.get) if per else None
    del enc
    _release(device)
    return dict(size=size["name"], mismatch=diff / max(total, 1), positions=total,
                worst_neuron=worst, worst_mismatch=per.get(worst, 0.0), per_neuron=per)


def run(cfg: argparse.Namespace, sizes: List[dict], log=print) -> dict:
    """Every (size, row, precision) step measurement, then the count checks."""
    device = torch.device(cfg.device)
    out: Dict[str, object] = dict(device=str(device), batch=cfg.batch, seconds=cfg.seconds,
                                  steps=cfg.steps, warmup=cfg.warmup, train=[], counts=[])
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    for size in sizes:
        for row in cfg.rows:
            for precision in cfg.precisions:
                log(f"[gpu_benchmark] {size['name']} {row} {precision} ...")
                try:
                    out["train"].append(measure_step(row, size, precision, cfg))
                except RuntimeError as e:  # out of memory: report and go on
                    _release(device)
                    out["train"].append(dict(row=row, size=size["name"], precision=precision,
                                             error=f"{type(e).__name__}: {str(e)[:200]}"))
        if "bf16" in cfg.precisions and "iml_spikeformer" in cfg.rows:
            out["counts"].append(model_count_agreement(size, cfg))
    out["neuron_check"] = neuron_autocast_check(device, cfg.seed)
    return out


def failed_checks(result: dict) -> Optional[str]:
    """The assertion of this benchmark: the neuron's own counts do not depend on autocast."""
    chk = result.get("neuron_check", {})
    if chk.get("same_input_mismatch", 0.0) != 0.0 or chk.get("bf16_input_mismatch", 0.0) != 0.0:
        return (f"IMLS counts under bf16 autocast differ from fp32 for the same input: "
                f"{chk}")
    return None
