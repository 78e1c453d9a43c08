"""The paper-scale recipe configs (egs2/{librispeech,aishell}/asr1/conf/train_asr_*.yaml) build
through ESPnet's ASRTask with the real vocabularies (5000 BPE pieces, 4233 characters) and
take one training step (forward, backward, the config's optimizer and scheduler) on a tiny
batch of random fbank, so a config used on a real corpus cannot break unnoticed.

Costs about 1-2 GB of memory per model (parameters, gradients, Adam state) and a few seconds.
"""

import resource
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
VOCAB = {"librispeech": 5000, "aishell": 4233}
MODELS = ("iml_spikeformer", "conformer", "transformer")


def build(config: Path, vocab: int, tmp: Path):
    """(model, optimizers, schedulers) as ESPnet's asr_train builds them, with the global MVN
    that the recipe adds (statistics of a unit-variance feature here)."""
    import espnet_iml  # noqa: F401  (registers iml_spikeformer)
    from espnet_iml.bin.launch import quiet_nltk

    quiet_nltk()  # espnet2's text frontends try to download nltk data at import
    from espnet2.tasks.abs_task import scheduler_classes
    from espnet2.tasks.asr import ASRTask

    tokens = tmp / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>", *(f"t{i}" for i in range(vocab - 3)),
                                 "<sos/eos>"]) + "\n")
    stats = tmp / "feats_stats.npz"
    np.savez(stats, count=np.array(100), sum=np.zeros(80), sum_square=np.full(80, 100.0))
    args = ASRTask.get_parser().parse_args(
        ["--config", str(config), "--token_list", str(tokens), "--output_dir", str(tmp),
         "--normalize", "global_mvn", "--normalize_conf", f"stats_file={stats}"])
    model = ASRTask.build_model(args)
    optimizers = ASRTask.build_optimizers(args, model)
    schedulers = [scheduler_classes[args.scheduler](optimizers[0], **args.scheduler_conf)]
    return model, optimizers, schedulers


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("recipe", list(VOCAB))
def test_paper_config_takes_one_training_step(recipe, model_name, tmp_path):
    config = ROOT / "egs2" / recipe / "asr1" / "conf" / f"train_asr_{model_name}.yaml"
    vocab = VOCAB[recipe]
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model, optimizers, schedulers = build(config, vocab, tmp_path)
    t_build = time.perf_counter() - t0
    assert model.vocab_size == vocab
    assert model.ctc.ctc_lo.out_features == vocab
    assert type(model.encoder).__name__ == {
        "iml_spikeformer": "IMLSpikeformerEncoder", "conformer": "ConformerEncoder",
        "transformer": "TransformerEncoder"}[model_name]

    # 2 utterances of 1 s (100 fbank frames; the second padded from 80) with 6 and 4 tokens.
    speech = torch.randn(2, 100, 80)
    lengths = torch.tensor([100, 80])
    text = torch.randint(1, vocab - 1, (2, 6))
    text[1, 4:] = -1  # ESPnet's padding id for text
    model.train()
    t0 = time.perf_counter()
    loss, stats, _ = model(speech=speech, speech_lengths=lengths, text=text,
                           text_lengths=torch.tensor([6, 4]))
    loss.backward()
    for opt in optimizers:
        opt.step()
    for sched in schedulers:
        sched.step()
    t_step = time.perf_counter() - t0
    assert torch.isfinite(loss), stats
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # Gradient reaches (nearly) every encoder parameter, and the optimizer stepped on them.
    # (Comparing parameters before and after is no test: the first warm-up step's learning
    # rate, ~1e-7, is below float32 resolution for parameters near 1.)
    encoder = dict(model.encoder.named_parameters())
    reached = [p for p in encoder.values() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(reached) > 0.9 * len(encoder), (len(reached), len(encoder))
    state = optimizers[0].state
    assert all(int(state[p]["step"]) == 1 for p in reached)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{recipe} {model_name}: {params:.1f} M params, build {t_build:.1f} s, "
          f"step {t_step:.1f} s, loss {loss.item():.1f}, peak RSS so far {rss:.1f} GB")
