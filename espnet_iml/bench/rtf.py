"""Inference speed: the real-time factor of the encoder alone and of ESPnet's joint
CTC/attention beam search (espnet2.bin.asr_inference.Speech2Text), and the encoders again,
interleaved: IML-Spikeformer folded, in its training form, and the Conformer.
"""

import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from espnet_iml.bench.models import fresh_asr_model, read_feats, row_label


def rtf_utterances(a):
    import torch

    if a.rtf_feats_scp:
        return read_feats(a.rtf_feats_scp, a.rtf_utts)
    g = torch.Generator().manual_seed(a.seed + 1)
    return [torch.randn(int(a.rtf_seconds * 100), 80, generator=g) for _ in range(a.rtf_utts)]



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
        cfg_path, model_path = fresh_asr_model(row, size, tmp, a)
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

