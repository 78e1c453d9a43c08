"""Token lists (and BPE models) in ESPnet's token_list format.

    python -m espnet_iml.recipe.tokenize --text data/train/text \
        --out data/token_list/char/tokens.txt --token_type char
    python -m espnet_iml.recipe.tokenize --text data/train/text \
        --out data/token_list/bpe_unigram5000/tokens.txt --token_type bpe --nbpe 5000 \
        --bpemode unigram --bpe_model_prefix data/token_list/bpe_unigram5000/bpe

tokens.txt has one token a line: ``<blank>``, ``<unk>``, the tokens, ``<sos/eos>``.

char: ESPnet's CharTokenizer on the transcripts (text field 2-): each character a token,
a space is ``<space>``; tokens ordered by descending count, ties in order of first appearance
(as ``espnet2.bin.tokenize_text --write_vocabulary true``). bpe: sentencepiece trained on the
transcripts (model type --bpemode, character_coverage 1.0, the non-linguistic symbols as
user-defined symbols) into <prefix>.model/.vocab; the token list is its vocabulary without
``<unk>``, ``<s>``, ``</s>`` (as ESPnet's asr.sh). When --nbpe exceeds what sentencepiece can
build from a small text, the largest size it allows is used and reported.

Non-linguistic symbols (--non_linguistic_symbols FILE, one a line, e.g. ``<noise>``) are kept
whole (or dropped with --remove_non_linguistic_symbols), as ESPnet's tokenizers do.
"""

import argparse
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_iml.recipe import kvfile
from espnet_iml.recipe.common import PRODUCERS, RecipeError, log, need_file, run_cli

TOOL = "tokenize"
_TOO_LOW = re.compile(r"smaller than required_chars\. (\d+) vs (\d+)")
_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")


def read_nlsyms(path: Optional[str]) -> List[str]:
    if path is None or path in ("", "none", "-"):
        return []
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"--non_linguistic_symbols {p} does not exist (expected one symbol a line, or 'none')")
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_transcripts(text: Path, cleaner: Optional[str]) -> Tuple[List[str], int]:
    """The transcripts (field 2-) of a Kaldi text file, cleaned; and how many were empty."""
    lines, empty = [], 0
    clean = None
    if cleaner not in (None, "", "none"):
        from espnet2.text.cleaner import TextCleaner

        clean = TextCleaner(cleaner)
    for e in kvfile.iter_entries(text):
        v = clean(e.value) if clean is not None else e.value
        if not v.strip():
            empty += 1
            continue
        lines.append(v)
    if not lines:
        raise RecipeError(f"{text} has no transcripts (expected lines 'UTTID text ...')")
    return lines, empty


def char_tokens(lines: List[str], nlsyms: List[str], remove_nlsyms: bool) -> Counter:
    from espnet2.text.char_tokenizer import CharTokenizer

    tok = CharTokenizer(non_linguistic_symbols=nlsyms, remove_non_linguistic_symbols=remove_nlsyms)
    counts: Counter = Counter()
    for line in lines:
        counts.update(tok.text2tokens(line))
    return counts


def train_bpe(lines: List[str], prefix: Path, nbpe: int, mode: str, nlsyms: List[str],
              ) -> Tuple[int, List[str]]:
    """Train sentencepiece; the vocabulary size used and the pieces (in model order)."""
    import sentencepiece as spm

    prefix.parent.mkdir(parents=True, exist_ok=True)
    fd, train_txt = tempfile.mkstemp(prefix=".spm_train.", suffix=".txt", dir=prefix.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    size = nbpe
    tmp_prefix = prefix.parent / f".{prefix.name}.tmp{os.getpid()}"
    try:
        for _ in range(5):
            opts = dict(input=train_txt, model_prefix=str(tmp_prefix), vocab_size=size,
                        model_type=mode, character_coverage=1.0, input_sentence_size=100000000,
                        minloglevel=2)
            if nlsyms:
                opts["user_defined_symbols"] = nlsyms
            try:
                spm.SentencePieceTrainer.train(**opts)
                break
            except RuntimeError as exc:
                m = _TOO_HIGH.search(str(exc))
                if m is None or int(m.group(2)) >= size:
                    msg = str(exc).split("]")[-1].strip()
                    few = _TOO_LOW.search(msg)
                    if few:
                        msg = (f"the text has {few.group(2)} distinct characters, each needs a piece: "
                               f"use --nbpe larger than {few.group(2)}")
                    raise RecipeError(f"sentencepiece cannot train a {mode} model of size {size} "
                                      f"on this text: {msg}") from None
                log(TOOL, f"--nbpe {size}: more than sentencepiece can build from this text; "
                          f"using its maximum {m.group(2)}")
                size = int(m.group(2))
        else:  # pragma: no cover - sentencepiece converges in one or two retries
            raise RecipeError(f"sentencepiece kept refusing vocabulary sizes down to {size}")
        for ext in ("model", "vocab"):
            os.replace(f"{tmp_prefix}.{ext}", f"{prefix}.{ext}")
    finally:
        Path(train_txt).unlink(missing_ok=True)
        for ext in ("model", "vocab"):
            Path(f"{tmp_prefix}.{ext}").unlink(missing_ok=True)
    pieces = [line.split("\t")[0] for line in
              Path(f"{prefix}.vocab").read_text(encoding="utf-8").splitlines()]
    return size, pieces


def token_list(tokens: List[str], blank: str, unk: str, sos_eos: str) -> List[str]:
    """ESPnet's order: blank, unk, the tokens (specials removed), sos/eos."""
    specials = {blank, unk, sos_eos}
    return [blank, unk] + [t for t in tokens if t not in specials] + [sos_eos]


def run(args) -> Dict[str, object]:
    need_file(args.text, "transcripts", PRODUCERS["data"] + " or " + PRODUCERS["feats"])
    nlsyms = read_nlsyms(args.non_linguistic_symbols)
    lines, empty = read_transcripts(args.text, args.cleaner)
    if empty:
        log(TOOL, f"{empty} empty transcript(s) in {args.text} ignored")
    info: Dict[str, object] = {"lines": len(lines)}
    if args.token_type == "char":
        counts = char_tokens(lines, nlsyms, args.remove_non_linguistic_symbols)
        # Counter keeps first-appearance order; sorted() is stable: ties stay in that order.
        ordered = [t for t, c in sorted(counts.items(), key=lambda tc: -tc[1]) if c > args.cutoff]
    else:
        if args.bpe_model_prefix is None:
            raise RecipeError("--token_type bpe needs --bpe_model_prefix (e.g. data/token_list/bpe_unigram5000/bpe)")
        if args.nbpe <= 0:
            raise RecipeError(f"--nbpe {args.nbpe}: expected a positive vocabulary size")
        text = lines
        if args.remove_non_linguistic_symbols and nlsyms:
            text = [re.sub("|".join(map(re.escape, nlsyms)), "", s) for s in lines]
            nlsyms = []
        size, pieces = train_bpe(text, args.bpe_model_prefix, args.nbpe, args.bpemode, nlsyms)
        info["nbpe"] = size
        ordered = [p for p in pieces if p not in ("<unk>", "<s>", "</s>")]
    tokens = token_list(ordered, args.blank, args.oov, args.sos_eos)
    kvfile.atomic_write_text(args.out, "".join(t + "\n" for t in tokens))
    info["tokens"] = len(tokens)
    return info


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m espnet_iml.recipe.{TOOL}",
        description="ESPnet token list (char or sentencepiece BPE) from a Kaldi text file.",
    )
    p.add_argument("--text", type=Path, required=True, help="Kaldi text file (UTTID transcript)")
    p.add_argument("--out", type=Path, required=True, help="token list to write (tokens.txt)")
    p.add_argument("--token_type", choices=("char", "bpe"), required=True)
    p.add_argument("--nbpe", type=int, default=5000, help="BPE vocabulary size (default 5000)")
    p.add_argument("--bpemode", choices=("unigram", "bpe"), default="unigram",
                   help="sentencepiece model type (default unigram)")
    p.add_argument("--bpe_model_prefix", type=Path,
                   help="sentencepiece output prefix: writes PREFIX.model and PREFIX.vocab")
    p.add_argument("--non_linguistic_symbols", default=None,
                   help="file of non-linguistic symbols, one a line ('none': no file)")
    p.add_argument("--remove_non_linguistic_symbols", action="store_true",
                   help="drop the non-linguistic symbols instead of keeping them as tokens")
    p.add_argument("--cleaner", default=None, help="ESPnet text cleaner applied first (default none)")
    p.add_argument("--cutoff", type=int, default=0,
                   help="char: drop tokens seen at most this many times (default 0: keep all)")
    p.add_argument("--blank", default="<blank>")
    p.add_argument("--oov", default="<unk>")
    p.add_argument("--sos_eos", default="<sos/eos>")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        info = run(args)
        extra = f", nbpe {info['nbpe']}" if "nbpe" in info else ""
        log(TOOL, f"{args.out}: {info['tokens']} tokens ({args.token_type}{extra}) from "
                  f"{info['lines']} transcripts")
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
