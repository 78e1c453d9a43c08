"""Helpers for tests that run ESPnet commands: a tiny spoken data set and a runner."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]

SENTENCES = [
    "open the red door",
    "close the blue window",
    "turn on the light",
    "play some music now",
    "stop the red car",
    "open the window now",
]


def synth_dataset(out: Path, sentences: List[str] = SENTENCES) -> Dict[str, Path]:
    """Speak each sentence with espeak-ng + sox (16 kHz wav) and write Kaldi-style lists."""
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    scp, text, shape = [], [], []
    for i, sent in enumerate(sentences):
        uid = f"utt{i:02d}"
        raw, wav = wav_dir / f"{uid}.22k.wav", wav_dir / f"{uid}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), sent], check=True)
        subprocess.run(["sox", "-D", str(raw), "-r", "16000", "-b", "16", "-c", "1", str(wav)],
                       check=True)
        raw.unlink()
        n = int(subprocess.run(["soxi", "-s", str(wav)], check=True, capture_output=True,
                               text=True).stdout)
        scp.append(f"{uid} {wav}")
        text.append(f"{uid} {sent}")
        shape.append(f"{uid} {n}")
    files = {"wav.scp": scp, "text": text, "speech_shape": shape}
    for name, lines in files.items():
        (out / name).write_text("\n".join(lines) + "\n")
    chars = sorted({c for s in sentences for c in s if c != " "})
    tokens = ["<blank>", "<unk>", "<space>", *chars, "<sos/eos>"]
    (out / "tokens.txt").write_text("\n".join(tokens) + "\n")
    return {name: out / name for name in [*files, "tokens.txt"]}


def _run(cmd: List[str], cwd: Path, timeout: int):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, *map(str, cmd)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd[:2]} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def run_module(module: str, args: List[str], cwd: Path, timeout: int = 600):
    """Run ``python -m module args`` with the test interpreter; fail with its log on error."""
    return _run(["-m", module, *args], cwd, timeout)


def run_script(script: Path, args: List[str], cwd: Path, timeout: int = 600):
    """Run ``python script args`` with the test interpreter; fail with its log on error."""
    return _run([script, *args], cwd, timeout)


def asr_train_args(data: Dict[str, Path], config: Path, exp: Path,
                   train: Dict[str, Path] = None) -> List[str]:
    """espnet_iml.bin.asr_train arguments for the synthetic set (char tokens, CPU): training
    on ``train`` (default: ``data``), validation on ``data``."""
    train = train or data
    args = ["--config", config, "--output_dir", exp, "--ngpu", 0, "--token_type", "char",
            "--token_list", data["tokens.txt"], "--use_preprocessor", "true"]
    for split, d in (("train", train), ("valid", data)):
        args += [f"--{split}_data_path_and_name_and_type", f"{d['wav.scp']},speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{d['text']},text,text",
                 f"--{split}_shape_file", d["speech_shape"]]
    return [str(a) for a in args]
