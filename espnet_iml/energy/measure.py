"""Count one model's inference operations over utterances and report their energy.

Each utterance runs alone (batch 1: no padding) through the encoder, the CTC projection and
the attention decoder teacher-forced on one hypothesis: the greedy CTC output of a trained
model, or ``decoder_tokens_per_frame`` x encoder frames random tokens for an untrained one
(beam search with beam B costs about B times that decoder energy).
"""

import logging
from typing import Iterable, Optional, Tuple

from espnet_iml.energy.counting import count_energy
from espnet_iml.energy.report import EnergyReport

log = logging.getLogger("espnet_iml.energy")


def _greedy_ctc(model, enc, enc_lens) -> Optional[list]:
    if getattr(model, "ctc", None) is None:
        return None
    ids = model.ctc.log_softmax(enc)[0, : int(enc_lens[0])].argmax(-1).tolist()
    return [t for i, t in enumerate(ids) if t != 0 and (i == 0 or t != ids[i - 1])]


def measure(model, utts: Iterable[Tuple[str, object, float]], trained: bool, title: str,
            spike_driven: bool = True, decoder: bool = True,
            decoder_tokens_per_frame: float = 0.15, sram_pj_per_64bit: Optional[float] = None,
            seed: int = 0) -> EnergyReport:
    """The energy report of ``model`` over ``utts`` ((key, input, seconds) each).

    spike_driven: take the IML-Spikeformer encoder's counts from its spike-driven execution
        (the strict numbers need it); False counts with forward hooks only.
    decoder: also run the attention decoder (teacher-forced, see the module docstring).
    sram_pj_per_64bit: the memory model's SRAM energy per 64-bit access (None: default).
    """
    import torch

    model.eval()
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    n, seconds, dec_tokens = 0, 0.0, 0
    with torch.no_grad(), count_energy(model, spike_driven=spike_driven,
                                       sram_pj_per_64bit=sram_pj_per_64bit) as counter:
        for key, x, sec in utts:
            xs = x[None].to(dev)
            lens = torch.tensor([x.size(0)], device=dev)
            enc, enc_lens = model.encode(xs, lens)[:2]
            if isinstance(enc, tuple):
                enc = enc[0]
            hyp = _greedy_ctc(model, enc, enc_lens)
            if getattr(model, "decoder", None) is not None and decoder:
                if not trained or hyp is None:
                    length = max(1, round(decoder_tokens_per_frame * int(enc_lens[0])))
                    hyp = torch.randint(1, model.vocab_size - 1, (length,), generator=g).tolist()
                ys_in = torch.tensor([[model.sos] + hyp], device=dev)
                model.decoder(enc, enc_lens, ys_in, torch.tensor([ys_in.size(1)], device=dev))
                dec_tokens += ys_in.size(1)
            counter.release()
            n += 1
            seconds += sec
            log.info("%s: %s (%.2f s)", title, key, sec)
    meta = dict(title=title, utterances=n, audio_seconds=round(seconds, 2),
                decoder_tokens=dec_tokens, trained=trained,
                encoder_counts="spike-driven execution (float64)"
                if spike_driven and counter.executed else "hooks (modelled)")
    return counter.report(meta)
