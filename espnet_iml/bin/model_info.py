"""Build an ESPnet ASR model from a training YAML and print its parameter counts.

    python -m espnet_iml.bin.model_info --config conf/train.yaml [--vocab_size 5000]
        [--token_list tokens.txt] [--compare 99.4]

Nothing is trained or loaded: this answers "how big is this config" before a run.
"""

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import espnet_iml  # noqa: F401  (registers iml_spikeformer)
from espnet_iml.bin.launch import quiet_nltk


def count_parameters(model) -> Dict[str, int]:
    """Parameters per top-level component (encoder, decoder, ctc, ...) and in total."""
    counts: Dict[str, int] = {}
    for name, p in model.named_parameters():
        part = name.split(".", 1)[0]
        counts[part] = counts.get(part, 0) + p.numel()
    counts["total"] = sum(counts.values())
    return counts


def build_model(config: Path, token_list: Path):
    quiet_nltk()
    from espnet2.tasks.asr import ASRTask

    parser = ASRTask.get_parser()
    with tempfile.TemporaryDirectory(prefix="espnet_iml_model_info.") as out:
        args = parser.parse_args(["--config", str(config), "--token_list", str(token_list),
                                  "--output_dir", out])
        return ASRTask.build_model(args)


def main(argv: Optional[List[str]] = None) -> Dict[str, int]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, required=True, help="ESPnet ASR training YAML")
    ap.add_argument("--vocab_size", type=int, default=5000,
                    help="output vocabulary size when no --token_list is given")
    ap.add_argument("--token_list", type=Path, help="token list (overrides --vocab_size)")
    ap.add_argument("--compare", type=float, help="reference size in millions to compare with")
    a = ap.parse_args(argv)
    if not a.config.is_file():
        ap.error(f"--config {a.config}: no such file")
    with tempfile.TemporaryDirectory(prefix="espnet_iml_model_info.") as tmp:
        token_list = a.token_list
        if token_list is None:
            token_list = Path(tmp) / "tokens.txt"
            tokens = ["<blank>", "<unk>"] + [f"t{i}" for i in range(a.vocab_size - 3)] + ["<sos/eos>"]
            token_list.write_text("\n".join(tokens) + "\n")
        counts = count_parameters(build_model(a.config, token_list))
    for part, n in counts.items():
        print(f"{part:>12s}: {n / 1e6:8.2f} M")
    if a.compare:
        print(f"{'vs ref':>12s}: {counts['total'] / 1e6:.2f} M / {a.compare:.2f} M = "
              f"{counts['total'] / 1e6 / a.compare:.3f}")
    return counts


if __name__ == "__main__":
    main(sys.argv[1:])
