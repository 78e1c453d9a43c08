"""What the speed benchmarks run: the model sizes, the encoder of each row, and the batch.

Shared by ``espnet_iml.bench.train_step`` (CPU/GPU training step), ``espnet_iml.bench.rtf``
(inference real-time factor) and ``espnet_iml.bench.gpu`` (paper-scale GPU measurements).
``a`` is any namespace with the fields the builders read (``spike_levels``, ``timesteps``,
``frontend_channels``, ``seed``, ``batch``, ``seconds``, ``feats_scp``).
"""

from pathlib import Path
from typing import List

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


def read_feats(scp, n: int) -> list:
    """The first ``n`` feature matrices of a Kaldi feats.scp, as float tensors."""
    import kaldiio
    import torch

    feats = []
    for _, arr in kaldiio.load_scp_sequential(str(scp)):
        feats.append(torch.as_tensor(arr, dtype=torch.float32))
        if len(feats) >= n:
            break
    return feats


def encoder_with_ctc(row: str, size: dict, a, device, lr: float):
    """(encoder, CTC head, Adam over both) of a row, seeded with ``a.seed``, in train mode."""
    import torch
    from espnet2.asr.ctc import CTC

    torch.manual_seed(a.seed)
    enc = build_encoder(row, size, a).to(device)
    ctc = CTC(size["vocab"], size["output_size"]).to(device)
    opt = torch.optim.Adam(list(enc.parameters()) + list(ctc.parameters()), lr=lr)
    return enc.train(), ctc.train(), opt


def make_batch(a, vocab: int, device):
    import torch

    g = torch.Generator().manual_seed(a.seed)
    if a.feats_scp:
        feats = read_feats(a.feats_scp, a.batch)
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


def fresh_asr_model(row: str, size: dict, tmp: Path, a):
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

