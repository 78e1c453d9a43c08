"""Generate our synthetic stand-in for AiShell-1 or LibriSpeech (espeak-ng + sox).

    python -m espnet_iml.bin.make_corpus --corpus aishell --out downloads
    python -m espnet_iml.bin.make_corpus --corpus librispeech --out downloads --size small

Writes the released directory layout under --out (see espnet_iml.corpus.aishell and
espnet_iml.corpus.librispeech). The same --seed and sizes give identical files; re-running
into a complete corpus is a no-op.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_iml.corpus import CORPORA, CorpusError, generate
from espnet_iml.corpus.synth import ToolMissing


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet_iml.bin.make_corpus",
        description="Synthetic AiShell-1 / LibriSpeech stand-ins in the released layouts.",
    )
    parser.add_argument("--corpus", required=True, choices=sorted(CORPORA))
    parser.add_argument("--out", required=True, type=Path, help="directory to write into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--size", default="tiny", choices=("tiny", "small"),
        help="tiny: aishell 48/8/8, librispeech 48/12/12 (train/dev/test); small: 600/100/100",
    )
    for split in ("train", "dev", "test"):
        parser.add_argument(
            f"--{split}", type=int, default=None, metavar="N",
            help=f"{split} utterances in total (librispeech: spread over the {split} subsets)",
        )
    parser.add_argument("--nj", type=int, default=2, help="parallel processes")
    parser.add_argument(
        "--force", action="store_true",
        help="replace a corpus this tool generated earlier with other parameters",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        generate(
            args.corpus, args.out, seed=args.seed, size=args.size, train=args.train,
            dev=args.dev, test=args.test, nj=args.nj, force=args.force, verbose=not args.quiet,
        )
    except (CorpusError, ToolMissing) as exc:
        print(f"make_corpus: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
