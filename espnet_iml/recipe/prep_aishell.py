"""AiShell-1 data preparation: Kaldi data directories data/{train,dev,test}.

    python -m espnet_iml.recipe.prep_aishell --corpus DIR --out data [--nj 4]

DIR holds the released layout::

    DIR/data_aishell/wav/<SPK>.tar.gz          one archive per speaker (unpacked in place,
                                               once: a hidden marker remembers each archive)
    DIR/data_aishell/wav/{train,dev,test}/<SPK>/BAC009<SPK>W<NNNN>.wav
    DIR/data_aishell/transcript/aishell_transcript_v0.8.txt   "UTTID word word ..."

Writes wav.scp (absolute paths), text (the spaces between words removed: characters are the
tokens, as in ESPnet's aishell recipe), utt2spk (speaker = the <SPK> directory) and spk2utt.
Transcripts are NFKC-normalized (full-width characters; espnet_iml.recipe.transcripts).
Utterances without audio, without transcript, with an empty one or one that is not UTF-8, and
with an empty or undecodable audio file are skipped and counted per reason (full list:
OUT/local/aishell_skipped.txt); normalized transcripts are counted per reason too
(OUT/local/aishell_changed.txt).
"""

import argparse
import json
import os
import shutil
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_iml.recipe import audio, datadir, kvfile, transcripts
from espnet_iml.recipe.common import RecipeError, Skips, log, run_cli

TOOL = "prep_aishell"
SPLITS = ("train", "dev", "test")
TRANSCRIPT = Path("data_aishell/transcript/aishell_transcript_v0.8.txt")
WAV_DIR = Path("data_aishell/wav")


def check_layout(corpus: Path) -> Tuple[Path, Path]:
    """The wav directory and the transcript, or a RecipeError saying what was expected."""
    if not corpus.is_dir():
        raise RecipeError(f"corpus directory {corpus} does not exist (expected the directory "
                          "that holds data_aishell/)")
    if not (corpus / "data_aishell").is_dir():
        hint = ""
        if (corpus / "transcript").is_dir() or (corpus / "wav").is_dir():
            hint = f"; {corpus} looks like data_aishell itself: pass its parent directory"
        elif (corpus / "data_aishell.tgz").is_file():
            hint = f"; unpack {corpus}/data_aishell.tgz there first (tar xzf data_aishell.tgz)"
        raise RecipeError(f"expected {corpus / 'data_aishell'}/ (the released AiShell-1 layout) "
                          f"in --corpus {corpus}{hint}")
    transcript = corpus / TRANSCRIPT
    if not transcript.is_file():
        raise RecipeError(f"expected {transcript} (the AiShell-1 transcript)")
    wav_dir = corpus / WAV_DIR
    if not wav_dir.is_dir():
        raise RecipeError(f"expected {wav_dir}/ holding <SPK>.tar.gz archives or "
                          "train/, dev/ and test/ directories of wav files")
    return wav_dir, transcript


def _marker(archive: Path) -> Path:
    return archive.parent / f".{archive.name}.extracted"


def _already_unpacked(archive: Path) -> bool:
    marker = _marker(archive)
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return False
    st = archive.stat()
    if info.get("size") != st.st_size or info.get("mtime_ns") != st.st_mtime_ns:
        return False
    return all((archive.parent / m).is_file() for m in info.get("members", []))


def unpack(archive: Path) -> Tuple[str, Optional[str]]:
    """Unpack one speaker archive into its directory; (archive name, error or None).

    Files are extracted into a hidden temporary directory and then renamed into place, so an
    interrupted run leaves no half-written wav; the marker is written last.
    """
    wav_dir = archive.parent
    tmp = wav_dir / f".extract.{archive.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, filter="data")
        members = []
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                rel = path.relative_to(tmp)
                dest = wav_dir / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
                members.append(str(rel))
        st = archive.stat()
        kvfile.atomic_write_text(_marker(archive), json.dumps(
            {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "members": members}) + "\n")
        return archive.name, None
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        return archive.name, f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unpack_all(wav_dir: Path, nj: int) -> List[Tuple[str, str]]:
    """Unpack every archive not unpacked yet; the (archive, error) of those that failed."""
    archives = sorted(wav_dir.glob("*.tar.gz"))
    todo = [a for a in archives if not _already_unpacked(a)]
    if archives:
        log(TOOL, f"{len(archives)} speaker archive(s) in {wav_dir}: "
                  f"{len(archives) - len(todo)} already unpacked, unpacking {len(todo)}")
    failed = []
    with ThreadPoolExecutor(max(1, nj)) as pool:
        for name, err in pool.map(unpack, todo):
            if err is not None:
                failed.append((name, err))
    for name, err in failed:
        log(TOOL, f"warning: cannot unpack {wav_dir / name} ({err}); its utterances are skipped")
    return failed


def read_transcript(path: Path, skips: Skips, changes: Skips) -> Dict[str, str]:
    """UTTID -> characters (NFKC, blanks removed); bad, repeated and empty lines are skipped."""
    text: Dict[str, str] = {}
    for key, raw in transcripts.read(path, skips).items():
        chars, changed = transcripts.aishell(raw)
        if not chars:
            skips.add(key, transcripts.EMPTY)
            continue
        text[key] = chars
        for reason in changed:
            changes.add(key, reason)
    return text


def scan_audio(wav_dir: Path, skips: Skips) -> Dict[str, Dict[str, Tuple[str, str]]]:
    """split -> {uttid: (absolute wav path, speaker)} from wav/<split>/<SPK>/<uttid>.wav."""
    out: Dict[str, Dict[str, Tuple[str, str]]] = {s: {} for s in SPLITS}
    seen: Dict[str, str] = {}
    for split in SPLITS:
        base = wav_dir / split
        if not base.is_dir():
            continue
        for spk_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for wav in sorted(spk_dir.glob("*.wav")):
                uid = wav.stem
                if uid in seen:
                    skips.add(uid, f"audio found twice ({seen[uid]} and {split}/{spk_dir.name}); second ignored")
                    continue
                seen[uid] = f"{split}/{spk_dir.name}"
                out[split][uid] = (os.path.abspath(wav), spk_dir.name)
    return out


def prepare(corpus: Path, out: Path, nj: int = 4) -> Dict[str, int]:
    wav_dir, transcript = check_layout(corpus)
    skips, changes = Skips(), Skips()
    failed = unpack_all(wav_dir, nj)
    text = read_transcript(transcript, skips, changes)
    found = scan_audio(wav_dir, skips)
    n_audio = sum(len(v) for v in found.values())
    if n_audio == 0:
        hint = (f" ({len(failed)} archive(s) failed to unpack)" if failed else "")
        raise RecipeError(f"no audio found: expected {wav_dir}/{{train,dev,test}}/<SPK>/<UTTID>.wav "
                          f"or {wav_dir}/<SPK>.tar.gz archives{hint}")
    reported = {k for k, _ in skips.items}  # empty or duplicate transcript lines
    with_audio, kept = set(), set()
    counts: Dict[str, int] = {}
    empty_splits = []
    for split in SPLITS:
        wav_scp, utt_text, utt2spk = {}, {}, {}
        for uid, (path, spk) in found[split].items():
            with_audio.add(uid)
            if uid not in text:
                if uid not in reported:
                    skips.add(uid, f"audio without transcript ({split})")
                continue
            wav_scp[uid], utt_text[uid], utt2spk[uid] = path, text[uid], spk
        # Empty and undecodable audio is left out here, before the token list sees its text.
        for uid, reason in sorted(audio.check_files(wav_scp, nj).items()):
            skips.add(uid, f"{reason} ({split})")
            del wav_scp[uid], utt_text[uid], utt2spk[uid]
        counts[split] = len(wav_scp)
        kept.update(wav_scp)
        if not wav_scp:
            empty_splits.append(split)
            continue
        d = out / split
        datadir.write(d, {"wav.scp": wav_scp, "text": utt_text, "utt2spk": utt2spk})
        errors, _, _ = datadir.validate(d, check_files=False)
        if errors:  # pragma: no cover - would be a bug of this tool
            raise RecipeError(f"internal error: {d} is invalid: {errors[0]}")
        log(TOOL, f"{d}: {len(wav_scp)} utterances, {len(set(utt2spk.values()))} speakers")
    no_audio = sorted(set(text) - with_audio)
    for uid in no_audio:
        skips.add(uid, "transcript without audio")
    changes.items = [(k, r) for k, r in changes.items if k in kept]
    changes.report(TOOL, what="transcript change", path=out / "local" / "aishell_changed.txt", verb="made")
    skips.report(TOOL, path=out / "local" / "aishell_skipped.txt")
    if empty_splits:
        raise RecipeError(
            f"no usable utterances for {', '.join(empty_splits)}: expected "
            + " and ".join(f"{wav_dir}/{s}/<SPK>/*.wav" for s in empty_splits)
            + (" (some archives failed to unpack, see above)" if failed else "")
            + "; the other sets were written")
    return counts


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m espnet_iml.recipe.{TOOL}",
        description="Kaldi data directories train/dev/test from the released AiShell-1 layout.",
    )
    p.add_argument("--corpus", type=Path, required=True,
                   help="directory holding data_aishell/ (wav/*.tar.gz or wav/{train,dev,test}, transcript/)")
    p.add_argument("--out", type=Path, default=Path("data"), help="where data/{train,dev,test} go (default: data)")
    p.add_argument("--nj", type=int, default=4, help="archives unpacked in parallel (default 4)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        counts = prepare(args.corpus, args.out, args.nj)
        log(TOOL, "done: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
