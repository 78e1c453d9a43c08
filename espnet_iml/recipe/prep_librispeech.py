"""LibriSpeech data preparation: Kaldi data directories for every subset present.

    python -m espnet_iml.recipe.prep_librispeech --corpus DIR --out data \
        [--train_sets train-clean-100 train-clean-360 train-other-500]

DIR holds ``LibriSpeech/<subset>/<reader>/<chapter>/<reader>-<chapter>-<NNNN>.flac`` and
``<reader>-<chapter>.trans.txt``. For each subset present (dev-clean, test-other, ...) this
writes OUT/<subset with - replaced by _> with wav.scp (absolute paths of the flac files, which
soundfile reads directly), text (upper case words without punctuation, as released; other
text is normalized so, see espnet_iml.recipe.transcripts), utt2spk (speaker =
<reader>-<chapter>, as in Kaldi's and ESPnet's recipes), spk2utt and spk2gender (from
LibriSpeech/SPEAKERS.TXT when present). Then, like ESPnet's librispeech recipe:
OUT/train_960 = the --train_sets present, OUT/dev = dev_clean + dev_other.
Utterances without audio, without transcript, with an empty one or one that is not UTF-8, and
with an empty or undecodable audio file are skipped and counted per reason (full list:
OUT/local/librispeech_skipped.txt); normalized transcripts are counted per reason too
(OUT/local/librispeech_changed.txt).
"""

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_iml.recipe import audio, datadir, kvfile, transcripts
from espnet_iml.recipe.common import RecipeError, Skips, log, run_cli

TOOL = "prep_librispeech"
SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other",
           "train-clean-100", "train-clean-360", "train-other-500")
DEFAULT_TRAIN = ("train-clean-100", "train-clean-360", "train-other-500")
DEV = ("dev-clean", "dev-other")
_UTT = re.compile(r"(\d+)-(\d+)-(\d+)")


def check_layout(corpus: Path) -> Tuple[Path, List[str]]:
    """DIR/LibriSpeech and the subsets found there, or a RecipeError saying what was expected."""
    if not corpus.is_dir():
        raise RecipeError(f"corpus directory {corpus} does not exist (expected the directory "
                          "that holds LibriSpeech/)")
    root = corpus / "LibriSpeech"
    if not root.is_dir():
        hint = ""
        if any((corpus / s).is_dir() for s in SUBSETS):
            hint = f"; {corpus} looks like the LibriSpeech directory itself: pass its parent"
        raise RecipeError(f"expected {root}/<subset>/<reader>/<chapter>/*.flac (e.g. "
                          f"{root}/dev-clean) in --corpus {corpus}{hint}")
    found = [s for s in SUBSETS if (root / s).is_dir()]
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in SUBSETS)
    if others:
        log(TOOL, f"ignoring unknown directories in {root}: {', '.join(others)}")
    if not found:
        raise RecipeError(f"no LibriSpeech subset in {root}: expected some of {', '.join(SUBSETS)}")
    return root, found


def read_genders(root: Path) -> Dict[str, str]:
    """reader -> m/f from SPEAKERS.TXT (``ID | SEX | SUBSET | MINUTES | NAME``)."""
    path = root / "SPEAKERS.TXT"
    genders: Dict[str, str] = {}
    if not path.is_file():
        return genders
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(";"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].lower() in ("m", "f"):
            genders[parts[0]] = parts[1].lower()
    return genders


def prepare_subset(root: Path, subset: str, genders: Dict[str, str], skips: Skips,
                   changes: Skips, nj: int = 8) -> Dict[str, Dict[str, str]]:
    """The files of one subset's data directory."""
    wav_scp: Dict[str, str] = {}
    text: Dict[str, str] = {}
    utt2spk: Dict[str, str] = {}
    spk2gender: Dict[str, str] = {}
    for reader_dir in sorted(p for p in (root / subset).iterdir() if p.is_dir()):
        for chapter_dir in sorted(p for p in reader_dir.iterdir() if p.is_dir()):
            reader, chapter = reader_dir.name, chapter_dir.name
            spk = f"{reader}-{chapter}"
            flacs = {p.stem: p for p in chapter_dir.glob("*.flac")}
            trans_path = chapter_dir / f"{spk}.trans.txt"
            if not trans_path.is_file():
                for uid in sorted(flacs):
                    skips.add(uid, f"audio without transcript (no {spk}.trans.txt in {subset})")
                continue
            n0 = len(skips)
            trans = transcripts.read(trans_path, skips, subset)
            reported = {k for k, _ in skips.items[n0:]}  # lines not UTF-8, repeated lines
            for uid in sorted(set(trans) | set(flacs)):
                if uid not in flacs:
                    skips.add(uid, f"transcript without audio ({subset})")
                    continue
                if uid not in trans:
                    if uid not in reported:
                        skips.add(uid, f"audio without transcript ({subset})")
                    continue
                words, changed = transcripts.librispeech(trans[uid])
                if not words:
                    skips.add(uid, f"{transcripts.EMPTY} ({subset})")
                elif not (m := _UTT.fullmatch(uid)) or m.group(1) != reader or m.group(2) != chapter:
                    skips.add(uid, f"id does not match {reader}/{chapter}/ ({subset})")
                else:
                    for reason in changed:
                        changes.add(uid, f"{reason} ({subset})")
                    wav_scp[uid] = os.path.abspath(flacs[uid])
                    text[uid] = words
                    utt2spk[uid] = spk
                    if reader in genders:
                        spk2gender[spk] = genders[reader]
    # Empty and undecodable audio is left out here, before the token list sees its text.
    for uid, reason in sorted(audio.check_files(wav_scp, nj).items()):
        skips.add(uid, f"{reason} ({subset})")
        changes.items = [(k, r) for k, r in changes.items if k != uid]
        del wav_scp[uid], text[uid], utt2spk[uid]
    spk2gender = {s: g for s, g in spk2gender.items() if s in set(utt2spk.values())}
    files = {"wav.scp": wav_scp, "text": text, "utt2spk": utt2spk}
    if spk2gender and set(spk2gender) == set(utt2spk.values()):
        files["spk2gender"] = spk2gender
    return files


def prepare(corpus: Path, out: Path, train_sets: Sequence[str] = DEFAULT_TRAIN,
            train_name: str = "train_960", dev_name: str = "dev", nj: int = 8) -> Dict[str, int]:
    unknown = [s for s in train_sets if s not in SUBSETS]
    if unknown:
        raise RecipeError(f"--train_sets {' '.join(unknown)}: not LibriSpeech subsets "
                          f"(expected some of {', '.join(s for s in SUBSETS if s.startswith('train'))})")
    root, found = check_layout(corpus)
    log(TOOL, f"{root}: present {' '.join(found)}; missing "
              f"{' '.join(s for s in SUBSETS if s not in found) or 'none'}")
    genders = read_genders(root)
    skips, changes = Skips(), Skips()
    counts: Dict[str, int] = {}
    written: List[str] = []
    for subset in found:
        files = prepare_subset(root, subset, genders, skips, changes, nj)
        name = subset.replace("-", "_")
        if not files["utt2spk"]:
            log(TOOL, f"warning: {root / subset} has no usable utterance; {out / name} not written")
            continue
        datadir.write(out / name, files)
        written.append(subset)
        counts[name] = len(files["utt2spk"])
        log(TOOL, f"{out / name}: {counts[name]} utterances, "
                  f"{len(set(files['utt2spk'].values()))} speakers")
    changes.report(TOOL, what="transcript change", path=out / "local" / "librispeech_changed.txt",
                   verb="made")
    skips.report(TOOL, path=out / "local" / "librispeech_skipped.txt")
    for combo, parts in ((train_name, list(train_sets)), (dev_name, list(DEV))):
        have = [s for s in parts if s in written]
        absent = [s for s in parts if s not in written]
        if not have:
            raise RecipeError(f"cannot make {out / combo}: none of {', '.join(parts)} found "
                              f"(expected {root}/<subset>/); the subsets found were written")
        if absent:
            log(TOOL, f"note: {', '.join(absent)} not found under {root}: {out / combo} combines "
                      f"only {', '.join(have)}")
        datadir.combine(out / combo, [out / s.replace("-", "_") for s in have])
        counts[combo] = len(kvfile.read_dict(out / combo / "utt2spk"))
        log(TOOL, f"{out / combo}: {counts[combo]} utterances ({' + '.join(have)})")
    return counts


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m espnet_iml.recipe.{TOOL}",
        description="Kaldi data directories from the released LibriSpeech layout.",
    )
    p.add_argument("--corpus", type=Path, required=True, help="directory holding LibriSpeech/")
    p.add_argument("--out", type=Path, default=Path("data"), help="output directory (default: data)")
    p.add_argument("--train_sets", "--train-sets", nargs="+", default=list(DEFAULT_TRAIN),
                   metavar="SUBSET", help="subsets combined into --train_name (default: all three)")
    p.add_argument("--train_name", default="train_960", help="combined training set (default train_960)")
    p.add_argument("--dev_name", default="dev", help="dev_clean + dev_other (default dev)")
    p.add_argument("--nj", type=int, default=8, help="audio files checked in parallel (default 8)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        counts = prepare(args.corpus, args.out, args.train_sets, args.train_name, args.dev_name, args.nj)
        log(TOOL, "done: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
