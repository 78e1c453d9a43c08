"""Training cost and inference speed: IML-Spikeformer vs a T-step LIF SNN vs ESPnet encoders.

    python -m espnet_iml.bin.benchmark [--device auto] [--batch 8 --seconds 10]
        [--steps 5 --warmup 2] [--rtf] [--paper_scale] [--json_out results.json]

Training rows (same batch, same CTC head, Adam; one row per process so memory and
allocator state do not leak between rows):

  iml_spikeformer  IMLS neurons, D = --spike_levels, one timestep
  lif_T<T>         the same network, every IMLS neuron a binary multi-step LIF neuron,
                   input repeated over T = --timesteps along the batch, outputs averaged
  conformer        espnet2.asr.encoder.conformer_encoder (macaron, rel-pos, conv module)
  transformer      espnet2.asr.encoder.transformer_encoder

"Matched size" = same width, heads, FFN units and number of blocks (parameter counts are
printed: the Conformer has two FFNs and a conv module per block, so it is larger). A step
is forward + CTC loss + backward + optimizer step on the encoder + CTC head; the time is
the median over --steps after --warmup (and over --rounds interleaved runs); on CPU the
ratios use the process CPU time per step, which other processes on the same cores inflate
far less than the wall time. Memory: CPU = peak resident set size (VmHWM,
reset through /proc/self/clear_refs before the first step) minus the resident size before
it, so it covers gradients, optimizer state and activations; GPU =
torch.cuda.max_memory_allocated minus the allocation before the first step.

--rtf adds inference speed on CPU (--rtf_device): real-time factor of the encoder alone and
of full joint CTC/attention beam search (espnet2.bin.asr_inference.Speech2Text, beam
--beam, CTC weight --ctc_weight) for IML-Spikeformer and the Conformer. Fresh models decode
exactly --decode_tokens_per_second x seconds tokens (min = max length), so both do the same
search work; pass trained models with --iml_model / --conformer_model CONFIG,MODEL (and
real features with --rtf_feats_scp) for end-detected decoding.

Timings on a shared CPU are noisy: compare medians, rerun, prefer a quiet machine.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROWS = ("iml_spikeformer", "lif", "conformer", "transformer", "iml_real_frontend")
DEFAULT_ROWS = ROWS[:4]
# kernel: temporal conv of IML's Q/K/V generator; conformer_kernel: the Conformer's conv
# module (15 in the spec's prototype at 4x144, 31 in ESPnet's published recipes).
SMALL = dict(name="4x144", output_size=144, heads=4, linear_units=576, num_blocks=4,
             kernel=15, conformer_kernel=15, vocab=100, decoder_blocks=2)
PAPER = (
    dict(name="12x256", output_size=256, heads=4, linear_units=1024, num_blocks=12,
         kernel=15, conformer_kernel=31, vocab=4233, decoder_blocks=6),
    dict(name="18x512", output_size=512, heads=8, linear_units=2048, num_blocks=18,
         kernel=15, conformer_kernel=31, vocab=5000, decoder_blocks=6),
)


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--batch", type=int, default=8, help="utterances per batch")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per utterance")
    ap.add_argument("--feats_scp", type=Path, help="take the batch from real features "
                    "(first --batch utterances of a Kaldi feats.scp) instead of random ones")
    ap.add_argument("--frontend_channels", type=int, default=0,
                    help="IML-Spikeformer's subsampling conv channels (0: model width)")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run all rows this many times, interleaved (pools the steps; "
                         "evens out load drift on a shared machine)")
    ap.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                    help=f"comma-separated subset of {','.join(ROWS)} (iml_real_frontend: "
                         "IML-Spikeformer with the real-valued Conv2d front end)")
    ap.add_argument("--spike_levels", type=int, default=4, help="D of IMLS")
    ap.add_argument("--timesteps", type=int, default=4, help="T of the LIF baseline")
    ap.add_argument("--paper_scale", action="store_true", help="12x256 and 18x512 sizes")
    for key in ("output_size", "heads", "linear_units", "num_blocks", "kernel",
                "conformer_kernel", "vocab", "decoder_blocks"):
        ap.add_argument(f"--{key}", type=int, default=None,
                        help=f"size override (default small: {SMALL[key]})")
    ap.add_argument("--no_train", action="store_true", help="skip the training benchmark")
    ap.add_argument("--rtf", action="store_true", help="also measure inference RTF")
    ap.add_argument("--rtf_device", default="cpu")
    ap.add_argument("--rtf_utts", type=int, default=3)
    ap.add_argument("--rtf_seconds", type=float, default=10.0)
    ap.add_argument("--rtf_repeats", type=int, default=3, help="median over repeats")
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--ctc_weight", type=float, default=0.3)
    ap.add_argument("--decode_tokens_per_second", type=float, default=4.0)
    ap.add_argument("--iml_model", help="CONFIG,MODEL of a trained IML-Spikeformer (RTF)")
    ap.add_argument("--conformer_model", help="CONFIG,MODEL of a trained Conformer (RTF)")
    ap.add_argument("--rtf_feats_scp", type=Path, help="real utterances for the RTF")
    ap.add_argument("--no_isolate", action="store_true",
                    help="run training rows in this process (memory numbers then leak)")
    ap.add_argument("--json_out", type=Path, help="write all results as JSON")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_size", help=argparse.SUPPRESS)
    ap.add_argument("--_result", help=argparse.SUPPRESS)
    return ap


def sizes(a) -> List[dict]:
    if a.paper_scale:
        return [dict(s) for s in PAPER]
    s = dict(SMALL)
    for key in s:
        if getattr(a, key, None) is not None:
            s[key] = getattr(a, key)
    s["name"] = f"{s['num_blocks']}x{s['output_size']}"
    return [s]


def device_of(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# --------------------------------------------------------------------------- models


def build_encoder(row: str, size: dict, a):
    """The encoder of a row (a torch module with ESPnet's encoder interface)."""
    from espnet_iml.encoder import IMLSpikeformerEncoder

    common = dict(output_size=size["output_size"], attention_heads=size["heads"],
                  linear_units=size["linear_units"], num_blocks=size["num_blocks"])
    if row in ("iml_spikeformer", "lif", "iml_real_frontend"):
        enc = IMLSpikeformerEncoder(80, spike_levels=a.spike_levels,
                                    qkv_conv_kernel=size["kernel"],
                                    spiking_frontend=row != "iml_real_frontend",
                                    frontend_channels=a.frontend_channels, **common)
        if row == "lif":
            from espnet_iml.lif import lif_encoder

            enc = lif_encoder(enc, a.timesteps)
        return enc
    if row == "conformer":
        from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

        return ConformerEncoder(80, input_layer="conv2d", normalize_before=True,
                                rel_pos_type="latest", pos_enc_layer_type="rel_pos",
                                selfattention_layer_type="rel_selfattn",
                                activation_type="swish", macaron_style=True,
                                use_cnn_module=True, cnn_module_kernel=size["conformer_kernel"],
                                use_flash_attn=False, **common)
    if row == "transformer":
        from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

        return TransformerEncoder(80, input_layer="conv2d", normalize_before=True, **common)
    raise ValueError(f"unknown row {row!r}; choose from {ROWS}")


def row_label(row: str, a) -> str:
    return {"iml_spikeformer": f"iml_spikeformer (IMLS D={a.spike_levels}, T=1)",
            "lif": f"same network, binary LIF, T={a.timesteps}",
            "conformer": "conformer (ESPnet)", "transformer": "transformer (ESPnet)",
            "iml_real_frontend": "iml_spikeformer, real-valued front end"}[row]


def make_batch(a, vocab: int, device):
    import torch

    g = torch.Generator().manual_seed(a.seed)
    if a.feats_scp:
        import kaldiio

        feats = []
        for _, arr in kaldiio.load_scp_sequential(str(a.feats_scp)):
            feats.append(torch.as_tensor(arr, dtype=torch.float32))
            if len(feats) >= a.batch:
                break
        lens = torch.tensor([f.size(0) for f in feats])
        xs = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    else:
        frames = int(a.seconds * 100)
        xs = torch.randn(a.batch, frames, 80, generator=g)
        lens = torch.full((a.batch,), frames)
    ylen = max(1, int(lens.min()) // 4 // 6)
    ys = torch.randint(1, vocab - 1, (xs.size(0), ylen), generator=g)
    ylens = torch.full((xs.size(0),), ylen)
    return xs.to(device), lens.to(device), ys.to(device), ylens.to(device)


# --------------------------------------------------------------------------- memory


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


# --------------------------------------------------------------------------- training row


def train_row(row: str, size: dict, a) -> dict:
    import torch

    from espnet2.asr.ctc import CTC

    torch.manual_seed(a.seed)
    dev = device_of(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    enc = build_encoder(row, size, a).to(dev)
    ctc = CTC(size["vocab"], size["output_size"]).to(dev)
    params = sum(p.numel() for p in enc.parameters())
    opt = torch.optim.Adam(list(enc.parameters()) + list(ctc.parameters()), lr=1e-3)
    xs, lens, ys, ylens = make_batch(a, size["vocab"], dev)
    enc.train()
    ctc.train()

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


def run_rows(a, size: dict) -> List[dict]:
    """Every row, --rounds times interleaved (row order repeated), each run in a fresh
    process; a row's steps from all rounds are pooled."""
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    for row in rows:
        if row not in ROWS:
            raise SystemExit(f"--rows: unknown row {row!r}; choose from {', '.join(ROWS)}")
    runs: Dict[str, List[dict]] = {row: [] for row in rows}
    for rnd in range(a.rounds):
        for row in rows:
            print(f"[benchmark] {size['name']}: {row} (round {rnd + 1}/{a.rounds}) ...",
                  file=sys.stderr, flush=True)
            runs[row].append(_run_row(row, size, a))
    results = []
    for row in rows:
        ok = [r for r in runs[row] if "error" not in r]
        if not ok:
            results.append(runs[row][-1])
            continue
        res = dict(ok[-1])
        res["step_s"] = [t for r in ok for t in r["step_s"]]
        res["cpu_s"] = [t for r in ok for t in r["cpu_s"]]
        res["step_s_median"] = statistics.median(res["step_s"])
        res["peak_mem_mb"] = statistics.median(r["peak_mem_mb"] for r in ok)
        res["rounds"] = len(ok)
        results.append(res)
    return results


def _run_row(row: str, size: dict, a) -> dict:
    if a.no_isolate:
        try:
            return train_row(row, size, a)
        except Exception as e:  # noqa: BLE001  (report and go on with the other rows)
            return dict(row=row, label=row_label(row, a), size=size["name"],
                        error=f"{type(e).__name__}: {e}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "espnet_iml.bin.benchmark", *sys_argv_tail(a),
                "--_worker", row, "--_size", json.dumps(size), "--_result", str(out)]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode == 0 and out.is_file():
            return json.loads(out.read_text())
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if proc.returncode < 0 or proc.returncode == 137:
            err = f"killed (signal {-proc.returncode}; out of memory?) {err}"
        return dict(row=row, label=row_label(row, a), size=size["name"], error=err)


def sys_argv_tail(a) -> List[str]:
    """The parent's arguments, minus the ones that only the parent acts on."""
    skip_flags = {"--rtf", "--no_isolate", "--paper_scale"}
    skip_vals = {"--json_out", "--_worker", "--_size", "--_result"}
    out, it = [], iter(a._argv)
    for tok in it:
        key = tok.split("=", 1)[0]
        if key in skip_flags:
            continue
        if key in skip_vals:
            if "=" not in tok:
                next(it, None)
            continue
        out.append(tok)
    return out


def train_table(results: List[dict]) -> str:
    """Ratios use the median CPU time per step on CPU (robust to other processes sharing
    the cores) and the median wall time on GPU."""
    ref = next((r for r in results if r["row"] == "iml_spikeformer" and "error" not in r), None)
    on_cpu = bool(ref) and ref["device"] == "cpu"
    key = (lambda r: statistics.median(r["cpu_s"])) if on_cpu else (
        lambda r: r["step_s_median"])
    lines = ["| model | params | wall s/step (median / min) | CPU s/step (median) | "
             f"time / IML ({'CPU' if on_cpu else 'wall'}) | peak memory (MB) | memory / IML |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['label']} | - | failed: {r['error']} | - | - | - | - |")
            continue
        tr = f"{key(r) / key(ref):.2f}x" if ref else "-"
        mr = (f"{r['peak_mem_mb'] / ref['peak_mem_mb']:.2f}x"
              if ref and ref["peak_mem_mb"] > 0 else "-")
        lines.append(
            f"| {r['label']} | {r['params'] / 1e6:.2f} M | {r['step_s_median']:.3f} / "
            f"{min(r['step_s']):.3f} | {statistics.median(r['cpu_s']):.3f} | {tr} | "
            f"{r['peak_mem_mb']:.0f} | {mr} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- RTF


def rtf_utterances(a):
    import torch

    if a.rtf_feats_scp:
        import kaldiio

        utts = []
        for _, arr in kaldiio.load_scp_sequential(str(a.rtf_feats_scp)):
            utts.append(torch.as_tensor(arr, dtype=torch.float32))
            if len(utts) >= a.rtf_utts:
                break
        return utts
    g = torch.Generator().manual_seed(a.seed + 1)
    return [torch.randn(int(a.rtf_seconds * 100), 80, generator=g) for _ in range(a.rtf_utts)]


def _fresh_asr_model(row: str, size: dict, tmp: Path, a):
    """Build and save an untrained ESPnetASRModel (config.yaml + model.pth) for Speech2Text."""
    import torch
    import yaml

    from espnet2.tasks.asr import ASRTask

    vocab = size["vocab"]
    tokens = ["<blank>", "<unk>"] + [f"t{i}" for i in range(vocab - 3)] + ["<sos/eos>"]
    if row == "iml_spikeformer":
        encoder, conf = "iml_spikeformer", dict(
            output_size=size["output_size"], attention_heads=size["heads"],
            linear_units=size["linear_units"], num_blocks=size["num_blocks"],
            spike_levels=a.spike_levels, qkv_conv_kernel=size["kernel"])
    else:
        encoder = row
        conf = dict(output_size=size["output_size"], attention_heads=size["heads"],
                    linear_units=size["linear_units"], num_blocks=size["num_blocks"],
                    input_layer="conv2d")
        if row == "conformer":
            conf.update(rel_pos_type="latest", pos_enc_layer_type="rel_pos",
                        selfattention_layer_type="rel_selfattn", activation_type="swish",
                        macaron_style=True, use_cnn_module=True,
                        cnn_module_kernel=size["conformer_kernel"])
    cfg = dict(
        input_size=80, token_list=tokens, encoder=encoder, encoder_conf=conf,
        decoder="transformer",
        decoder_conf=dict(attention_heads=size["heads"], linear_units=4 * size["output_size"],
                          num_blocks=size["decoder_blocks"]),
        model_conf=dict(ctc_weight=a.ctc_weight), frontend=None, specaug=None,
        normalize=None, model="espnet", token_type="char",
    )
    parser = ASRTask.get_parser()
    args = parser.parse_args(["--output_dir", str(tmp)])
    for k, v in cfg.items():
        setattr(args, k, v)
    torch.manual_seed(a.seed)
    model = ASRTask.build_model(args)
    cfg_path, model_path = tmp / f"{row}.yaml", tmp / f"{row}.pth"
    full = {k: v for k, v in vars(args).items() if _yaml_safe(v)}
    cfg_path.write_text(yaml.safe_dump(full))
    torch.save(model.state_dict(), model_path)
    return cfg_path, model_path


def _yaml_safe(v) -> bool:
    import yaml

    try:
        yaml.safe_dump(v)
        return True
    except Exception:  # noqa: BLE001
        return False


def set_fold(model, fold: bool) -> int:
    """Set ``fold_in_eval`` on every module that has it (folded eval form vs the training
    form run in eval mode); returns how many."""
    n = 0
    for m in model.modules():
        if hasattr(m, "fold_in_eval"):
            m.fold_in_eval = fold
            n += 1
    return n


def encoder_pass(model, utts, dev):
    """(wall s, process CPU s) of encoding ``utts`` one by one."""
    import torch

    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for u in utts:
            model.encode(u[None].to(dev), torch.tensor([u.size(0)], device=dev))
    return time.perf_counter() - t0, time.process_time() - c0


def encoder_rounds(models: Dict[str, object], utts, dev, repeats: int) -> Dict[str, tuple]:
    """Encoder passes of every (name -> (model, fold)) entry, interleaved ``repeats`` times
    after one warm-up each: medians of (wall s, CPU s)."""
    runs: Dict[str, list] = {k: [] for k in models}
    for rnd in range(repeats + 1):
        for name, (model, fold) in models.items():
            if fold is not None:
                set_fold(model, fold)
            t = encoder_pass(model, utts, dev)
            if rnd:
                runs[name].append(t)
    for model, _ in models.values():
        set_fold(model, True)
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for k, v in runs.items()}


def rtf_row(row: str, size: dict, a, trained: Optional[str], tmp: Path) -> dict:
    import torch

    from espnet2.bin.asr_inference import Speech2Text

    dev = a.rtf_device
    if trained:
        cfg_path, model_path = trained.split(",", 1)
    else:
        cfg_path, model_path = _fresh_asr_model(row, size, tmp, a)
    utts = rtf_utterances(a)
    seconds = sum(u.size(0) for u in utts) / 100.0
    fixed = not trained
    with contextlib.redirect_stdout(sys.stderr):
        s2t_kwargs = dict(asr_train_config=str(cfg_path), asr_model_file=str(model_path),
                          device=dev, beam_size=a.beam, ctc_weight=a.ctc_weight,
                          lm_weight=0.0, penalty=0.0, nbest=1)
        s2t = Speech2Text(**s2t_kwargs)
    model = s2t.asr_model.eval()

    def enc_pass():
        return encoder_pass(model, utts, dev)[0]

    def dec_pass():
        n_tok = 0
        t0 = time.perf_counter()
        for u in utts:
            if fixed:
                n = max(1, round(a.decode_tokens_per_second * u.size(0) / 100.0))
                # ESPnet keeps a hypothesis ending at step i only when i >= minlen, and
                # appends <eos> to every running one at the last step (i = maxlen - 1)
                s2t.maxlenratio, s2t.minlenratio = -n, -(n - 1)
            hyps = s2t(u.numpy())
            n_tok += len(hyps[0][2]) if hyps else 0
        return time.perf_counter() - t0, n_tok

    enc_pass()  # warm-up
    enc_t = statistics.median(enc_pass() for _ in range(a.rtf_repeats))
    dec_runs = [dec_pass() for _ in range(max(1, a.rtf_repeats - 1))]
    dec_t = statistics.median(t for t, _ in dec_runs)
    return dict(row=row, label=row_label(row, a), trained=bool(trained), audio_s=seconds,
                encoder_rtf=enc_t / seconds, decode_rtf=dec_t / seconds,
                tokens=dec_runs[-1][1], threads=torch.get_num_threads(), device=dev,
                _model=model, _utts=utts)


def run_rtf(a, size: dict) -> List[dict]:
    """Full-decoding and encoder RTF per model, then the encoders again, interleaved:
    IML folded, IML in its training form (fold_in_eval off), Conformer (CPU-time ratios)."""
    import logging

    logging.disable(logging.WARNING)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for row, trained in (("iml_spikeformer", a.iml_model), ("conformer", a.conformer_model)):
            print(f"[benchmark] RTF {size['name']}: {row} ...", file=sys.stderr, flush=True)
            try:
                out.append(rtf_row(row, size, a, trained, Path(tmp)))
            except Exception as e:  # noqa: BLE001
                out.append(dict(row=row, label=row_label(row, a), error=f"{type(e).__name__}: {e}"))
    ok = {r["row"]: r for r in out if "error" not in r}
    if "iml_spikeformer" in ok:
        iml = ok["iml_spikeformer"]
        models = {"iml_folded": (iml["_model"], True), "iml_training_form": (iml["_model"], False)}
        if "conformer" in ok:
            models["conformer"] = (ok["conformer"]["_model"], None)
        print(f"[benchmark] RTF {size['name']}: interleaved encoder rounds ...", file=sys.stderr,
              flush=True)
        enc = encoder_rounds(models, iml["_utts"], a.rtf_device, a.rtf_repeats)
        secs = iml["audio_s"]
        iml["encoder_interleaved"] = {k: dict(rtf_wall=w / secs, rtf_cpu=c / secs)
                                      for k, (w, c) in enc.items()}
    for r in out:
        r.pop("_model", None)
        r.pop("_utts", None)
    return out


def rtf_table(results: List[dict], a) -> str:
    lines = [f"| model | encoder RTF | joint CTC/attention RTF (beam {a.beam}, ctc "
             f"{a.ctc_weight}) | tokens decoded | weights |", "|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['label']} | failed: {r['error']} | - | - | - |")
            continue
        lines.append(f"| {r['label']} | {r['encoder_rtf']:.4f} | {r['decode_rtf']:.4f} | "
                     f"{r['tokens']} | {'trained' if r['trained'] else 'untrained'} |")
    ok = [r for r in results if "error" not in r]
    if len(ok) == 2:
        lines.append("")
        lines.append(f"IML / Conformer: encoder {ok[0]['encoder_rtf'] / ok[1]['encoder_rtf']:.2f}x,"
                     f" full decoding {ok[0]['decode_rtf'] / ok[1]['decode_rtf']:.2f}x")
    inter = next((r["encoder_interleaved"] for r in ok if "encoder_interleaved" in r), None)
    if inter:
        lines += ["", f"Encoders again, interleaved ({a.rtf_repeats} rounds; ratios of process "
                  "CPU time):", "", "| encoder | RTF (wall) | RTF (CPU) | CPU / IML folded |",
                  "|---|---|---|---|"]
        ref = inter["iml_folded"]["rtf_cpu"]
        names = {"iml_folded": "iml_spikeformer, folded eval form",
                 "iml_training_form": "iml_spikeformer, training form in eval (fold_in_eval "
                 "off)", "conformer": "conformer (ESPnet)"}
        for k, v in inter.items():
            lines.append(f"| {names[k]} | {v['rtf_wall']:.4f} | {v['rtf_cpu']:.4f} | "
                         f"{v['rtf_cpu'] / ref:.2f}x |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    run(argv)
    return 0


def run(argv: Optional[List[str]] = None) -> Dict[str, object]:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = get_parser().parse_args(argv)
    a._argv = argv
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    from espnet_iml.bin.launch import quiet_nltk

    quiet_nltk()
    if a._worker:
        import warnings

        warnings.filterwarnings("ignore")
        with contextlib.redirect_stdout(sys.stderr):
            res = train_row(a._worker, json.loads(a._size), a)
        Path(a._result).write_text(json.dumps(res))
        return res
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = device_of(a.device)
    out: Dict[str, object] = dict(device=str(dev), threads=a.threads or torch.get_num_threads(),
                                  batch=a.batch, seconds=a.seconds, sizes={})
    print(f"# Benchmark (device {dev}, {out['threads']} threads)")
    if not a.no_train:
        print(f"training batch: {a.batch} x "
              f"{a.seconds:g} s{' from ' + str(a.feats_scp) if a.feats_scp else ' random fbank'}; "
              f"median of {a.steps} steps after {a.warmup}, {a.rounds} round(s)")
    for size in sizes(a):
        entry = {}
        if not a.no_train:
            res = run_rows(a, size)
            entry["train"] = res
            print(f"\n## Training step, {size['name']} (FFN {size['linear_units']}, "
                  f"{size['heads']} heads, vocab {size['vocab']})\n")
            print(train_table(res))
            how = next((r["memory_measure"] for r in res if "memory_measure" in r), "")
            print(f"\nmemory: {how}")
        if a.rtf:
            with contextlib.redirect_stdout(sys.stderr):
                res = run_rtf(a, size)
            entry["rtf"] = res
            audio = next((r["audio_s"] for r in res if "audio_s" in r), 0.0)
            src = a.rtf_feats_scp or "random features"
            which = ("given trained models" if a.iml_model or a.conformer_model
                     else f"fresh {size['name']}")
            print(f"\n## Inference real-time factor, {which} ({a.rtf_device}; "
                  f"{len(rtf_utterances(a))} utterances, {audio:.1f} s of audio from {src})\n")
            print(rtf_table(res, a))
        out["sizes"][size["name"]] = entry
    if a.json_out:
        a.json_out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    sys.exit(main())
