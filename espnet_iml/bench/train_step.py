"""One training step of an encoder + CTC head, timed, with its peak memory.

Memory: CPU = peak resident set size (VmHWM, reset through /proc/self/clear_refs before the
first step) minus the resident size before it, so it covers gradients, optimizer state and
activations; GPU = torch.cuda.max_memory_allocated minus the allocation before the first
step. Times: wall and process CPU time of every step after the warm-up.
"""

import statistics
import time
from pathlib import Path
from typing import Optional

from espnet_iml.bench.models import device_of, encoder_with_ctc, make_batch, row_label


def _status_kb(field: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False

def train_row(row: str, size: dict, a) -> dict:
    import torch

    dev = device_of(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    enc, ctc, opt = encoder_with_ctc(row, size, a, dev, lr=1e-3)
    params = sum(p.numel() for p in enc.parameters())
    xs, lens, ys, ylens = make_batch(a, size["vocab"], dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        out, olens, _ = enc(xs, lens)
        loss = ctc(out, olens, ys, ylens)
        loss.backward()
        opt.step()
        return float(loss.detach())

    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        how = "torch.cuda.max_memory_allocated - allocated before the first step"
    else:
        rss0 = _status_kb("VmRSS")
        how = ("peak RSS (VmHWM, reset via /proc/self/clear_refs) - RSS before the first step"
               if _reset_peak_rss() else "ru_maxrss - RSS before the first step (no "
               "clear_refs: the peak may include model building)")
    times, cpu_times, losses = [], [], []
    for i in range(a.warmup + a.steps):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(step())
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    if dev.type == "cuda":
        mem = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else:
        peak = _status_kb("VmHWM")
        if peak is None or "ru_maxrss" in how:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mem = (peak - (rss0 or 0)) / 1024
    return dict(row=row, label=row_label(row, a), size=size["name"], params=params,
                step_s_median=statistics.median(times), step_s=times, cpu_s=cpu_times,
                peak_mem_mb=mem,
                memory_measure=how, device=str(dev), threads=torch.get_num_threads(),
                batch=list(xs.shape), final_loss=losses[-1])



