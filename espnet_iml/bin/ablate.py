"""The ablations of local/ablate.sh: their configs before training, their table after.

The ablations it knows, each a switch of the full model's config::

    python -m espnet_iml.bin.ablate list

Before training, one config per ablation, the base config with the ablation's override
(checked by building the model)::

    python -m espnet_iml.bin.ablate configs --base conf/train_asr_iml_spikeformer_small.yaml \\
        --size small --out_dir exp/librispeech_small/ablate/conf d1 no_hdm lif4

writes <out_dir>/train_asr_<ablation>_<size>.yaml. After training and decoding::

    python -m espnet_iml.bin.ablate report --run iml_spikeformer 0 exp/.../asr_compare_iml_spikeformer_seed0 \\
        --run d1 0 exp/.../asr_compare_d1_seed0 --run conformer 0 ... --out_dir exp/.../ablate

writes ablate.md (the table; then every metric per seed), ablate.json and ablate.png to
--out_dir and prints the markdown. Run names that are ablation names are ablations; the
others are baselines. Definitions: espnet_iml.compare.ablations (the switches),
espnet_iml.compare.ablation_table (the columns), espnet_iml.compare.collect (the numbers).
"""

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from espnet_iml.recipe.common import RecipeError, log, run_cli

TOOL = "ablate"


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"python -m espnet_iml.bin.{TOOL}",
                                 description="Ablations of IML-Spikeformer: configs and table.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the ablations and their switches")
    c = sub.add_parser("configs", help="one training config per ablation")
    c.add_argument("ablations", nargs="+", help="ablation names (see list)")
    c.add_argument("--base", type=Path, required=True, help="the full model's training config")
    c.add_argument("--size", required=True, help="size in the file names (small, tiny)")
    c.add_argument("--out_dir", type=Path, required=True)
    c.add_argument("--token_list", type=Path,
                   help="tokens.txt for the check (default: a 10-token list)")
    r = sub.add_parser("report", help="the ablation table of finished runs")
    r.add_argument("--run", nargs=3, action="append", required=True,
                   metavar=("MODEL", "SEED", "EXP_DIR"), help="one trained and decoded run")
    r.add_argument("--out_dir", type=Path, required=True)
    r.add_argument("--full", default="iml_spikeformer", help="the full model's name")
    r.add_argument("--reference", default="conformer", help="the baseline of the second ratio")
    r.add_argument("--title", default="Ablations")
    r.add_argument("--tiny", action="store_true",
                   help="say in the report that tiny runs only check the plumbing")
    return ap


def list_ablations(_a: argparse.Namespace) -> int:
    from espnet_iml.compare.ablations import DEFAULT, FIXED, PATTERNS, ablation

    for name in FIXED:
        ab = ablation(name)
        print(f"{name:16s} {ab.switch():48s} {ab.description}")
    for _, form, _ in PATTERNS:
        example = {"d<N>": "d2", "lif<T>": "lif4"}.get(form, "rate0.4w50")
        ab = ablation(example)
        print(f"{form:16s} e.g. {example}: {ab.switch()}")
    print(f"default set (local/ablate.sh): {' '.join(DEFAULT)}")
    return 0


def configs(a: argparse.Namespace) -> int:
    import yaml

    from espnet_iml.bin.model_info import build_model
    from espnet_iml.compare.ablations import ablation, config_text, derive

    if not a.base.is_file():
        raise RecipeError(f"--base {a.base}: no such file")
    if len(set(a.ablations)) != len(a.ablations):
        raise RecipeError(f"an ablation is named twice: {' '.join(a.ablations)}")
    try:
        abls = [ablation(n) for n in a.ablations]
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    base = yaml.safe_load(a.base.read_text())
    a.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="espnet_iml_ablate.") as tmp:
        token_list = a.token_list
        if token_list is None:
            token_list = Path(tmp) / "tokens.txt"
            token_list.write_text("\n".join(["<blank>", "<unk>"] + [f"t{i}" for i in range(7)]
                                            + ["<sos/eos>"]) + "\n")
        for ab in abls:
            try:
                config, note = derive(base, ab)
            except ValueError as exc:
                raise RecipeError(f"--base {a.base}: {exc}") from None
            path = a.out_dir / f"train_asr_{ab.name}_{a.size}.yaml"
            text = config_text(config, ab, str(a.base))
            check = Path(tmp) / path.name
            check.write_text(text)
            try:  # every option checked before any training starts
                with contextlib.redirect_stdout(sys.stderr):
                    build_model(check, token_list)
            except (ValueError, TypeError) as exc:
                raise RecipeError(f"ablation {ab.name} ({ab.switch()}): {exc}") from None
            if not path.is_file() or path.read_text() != text:  # unchanged: keep its time
                path.write_text(text)
            log(TOOL, f"{ab.name}: {ab.switch()} -> {path}")
            if note:
                log(TOOL, f"note: {note} (its row repeats the full model with other runs)")
    return 0


def report(a: argparse.Namespace) -> int:
    from espnet_iml.compare.ablation_table import ablation_table, markdown_table, table_json
    from espnet_iml.compare.ablations import ablation
    from espnet_iml.compare.collect import collect_runs
    from espnet_iml.compare.report import plot, plot_energy

    runs, names = collect_runs(a.run, tool=TOOL)
    abls = []
    for n in names:
        with contextlib.suppress(ValueError):
            abls.append(ablation(n))
    ab_names = [ab.name for ab in abls]
    baselines = [n for n in names if n not in ab_names and n != a.full]
    models = ([a.full] if a.full in names else []) + ab_names + baselines
    if not any(r.errors for r in runs):
        raise RecipeError("no run has scores (<exp>/<decode>/<test set>/score_*/score.json): "
                          "train, decode and score first (asr.sh stages 7-9)")
    table = ablation_table(runs, models, abls, a.full, a.reference)
    text = markdown_table(table, a.title, tiny=a.tiny)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    (a.out_dir / "ablate.md").write_text(text, encoding="utf-8")
    (a.out_dir / "ablate.json").write_text(table_json(table), encoding="utf-8")
    plot(table.vs_reference, a.out_dir / "ablate.png", a.title)
    wrote = "ablate.md, ablate.json, ablate.png"
    if table.keys and plot_energy(table.vs_reference, table.keys[0], a.out_dir / "ablate_energy.png",
                                  a.title):
        wrote += ", ablate_energy.png"
    print(text)
    log(TOOL, f"wrote {a.out_dir}/{wrote}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    a = get_parser().parse_args(argv)
    return run_cli(TOOL, lambda: {"list": list_ablations, "configs": configs,
                                  "report": report}[a.command](a))


if __name__ == "__main__":
    sys.exit(main())
