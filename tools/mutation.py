"""Mutation testing of espnet_iml: does the test suite notice small bugs? (not run by CI)

    python tools/mutation.py known                        # issue 12's bugs, each must be caught
    python tools/mutation.py count                        # mutants per file
    python tools/mutation.py sample --n 150 --seed 0 --json /tmp/mutation.json
    python tools/mutation.py rerun /tmp/mutation.json     # its survivors, after adding tests

Each mutant is one small change to one file (an operator swapped, a comparison made strict
or loose, a number + 1, a boolean flipped, a ``not`` or a unary minus dropped; see
``Mutator``) in a private copy of the repository (the checkout is never modified). The fast
tests of that file (``TESTS``) then run in a forked child of a process that has already
imported torch and ESPnet, so a mutant costs its tests, not the imports. A mutant is killed
when a test fails (or it runs past the time limit), and survives when all pass.

``sample`` draws a fixed number of mutants with a seed, spread over the files in proportion to
their mutant counts (model files weighted x3, ``WEIGHT``). Files whose tests take minutes
(register.py, __init__.py: tests/test_plugin_tasks.py trains with ESPnet) are left out.
The results and our judgement of each survivor are in docs/mutation.md.
"""

import argparse
import ast
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
MODEL_TESTS = ["tests/test_imls.py", "tests/test_norm.py", "tests/test_attention.py",
               "tests/test_encoder.py", "tests/test_encoder_edges.py"]
RECIPE_TESTS = ["tests/test_recipe_tools.py", "tests/test_recipe_edges.py"]


def _recipe(keywords: str) -> List[str]:
    # the argparse --help test runs every tool's parser, the generated-corpora test every stage
    return RECIPE_TESTS + ["-k", f"{keywords} or help or generated"]


# The fast tests that exercise each file (pytest arguments).
TESTS: Dict[str, List[str]] = {
    **{f"espnet_iml/{m}.py": MODEL_TESTS for m in
       ("imls", "norm", "rep", "hdm", "attention", "block", "subsampling", "encoder")},
    "espnet_iml/lif.py": ["tests/test_benchmark.py", "-k", "lif"],
    **{f"espnet_iml/energy/{m}.py": ["tests/test_energy.py"] for m in
       ("records", "counting", "models", "report", "plots")},
    "espnet_iml/recipe/audio.py": _recipe("audio or fbank or prep or speed"),
    "espnet_iml/recipe/common.py": RECIPE_TESTS,
    "espnet_iml/recipe/datadir.py": _recipe("datadir or prep"),
    "espnet_iml/recipe/fbank.py": _recipe("fbank"),
    "espnet_iml/recipe/format_audio.py": _recipe("format_audio"),
    "espnet_iml/recipe/kvfile.py": RECIPE_TESTS,
    "espnet_iml/recipe/prep_aishell.py": _recipe("prep_aishell"),
    "espnet_iml/recipe/prep_librispeech.py": _recipe("prep_librispeech"),
    "espnet_iml/recipe/progress.py": _recipe("progress"),
    "espnet_iml/recipe/results.py": _recipe("results"),
    "espnet_iml/recipe/score.py": _recipe("score"),
    "espnet_iml/recipe/speed_perturb.py": _recipe("speed_perturb"),
    "espnet_iml/recipe/transcripts.py": _recipe("normalization or planted or prep"),
}
WEIGHT = {f: 3.0 if t is MODEL_TESTS else 1.0 for f, t in TESTS.items()}

# Issue 12's list of bugs the suite let through, as (file, exact text, its replacement, bug).
KNOWN: List[Tuple[str, str, str, str]] = [
    ("espnet_iml/imls.py", "counts = torch.floor(u / theta + 0.5).clamp_(0, levels)",
     "counts = torch.round(u / theta).clamp_(0, levels)",
     "the model's neuron rounds half to even"),
    ("espnet_iml/imls.py", "counts = torch.floor(u / theta + 0.5).clamp_(0, levels)",
     "counts = torch.floor(u / theta + 0.5).clamp_(0, levels + 1)",
     "the model's neuron saturates at D + 1"),
    ("espnet_iml/hdm.py", "return [e0 + span * h / (heads - 1) for h in range(heads)]",
     "return [e0 for h in range(heads)]", "one decay for every head of a layer"),
    ("espnet_iml/encoder.py", "decay_exponents(i, num_blocks,", "decay_exponents(0, num_blocks,",
     "layer 0's decay schedule for every block"),
    ("espnet_iml/hdm.py", "dist = (pos[:, None] - pos[None, :]).abs().to(gammas.dtype)",
     "dist = (pos[:, None] - pos[None, :]).abs().to(gammas.dtype) / 2",
     "a halved decay distance"),
    ("espnet_iml/hdm.py", "return [e0 + span * h / (heads - 1) for h in range(heads)]",
     "return [e0 + span / 2 * h / (heads - 1) for h in range(heads)]",
     "a halved decay span across heads"),
    ("espnet_iml/attention.py", "torch.ones(length, length, device=device).tril()[None]",
     "torch.ones(length, length, device=device).tril(1)[None]",
     "the causal mask without HDM lets the next frame through"),
    ("espnet_iml/attention.py", "self.qk(q, k.transpose(-2, -1))",
     "self.qk(k, q.transpose(-2, -1))", "Q and K swapped in the attention scores"),
    ("espnet_iml/norm.py", "a = self.weight / torch.sqrt(self.running_var + self.eps)",
     "a = self.weight / torch.sqrt(self.running_var)", "BatchNorm's eval form without eps"),
    ("espnet_iml/norm.py", "scale = self.weight * torch.rsqrt(var + self.eps)",
     "scale = self.weight * torch.rsqrt(var)", "BatchNorm's training form without eps"),
    ("espnet_iml/recipe/datadir.py", "return float(first) == 0", "return float(first) < 0",
     "a data dir that accepts (and fix keeps) zero-length utterances"),
    ("espnet_iml/recipe/datadir.py", "p.isdigit() and int(p) > 0 for p in parts",
     "p.isdigit() for p in parts", "feats_shape accepts a zero dimension"),
    ("espnet_iml/recipe/fbank.py", "if x.shape[0] < min_samples(sr):",
     "if x.shape[0] <= min_samples(sr):", "fbank drops audio of exactly one frame"),
]


# ---------------------------------------------------------------------------------------
# mutants

_BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
          ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}
_CMPOP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
          ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
          ast.IsNot: ast.Is}
_BOOLOP = {ast.And: ast.Or, ast.Or: ast.And}


def _is_main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


class Mutator(ast.NodeTransformer):
    """Walks a module in a fixed order; numbers every possible mutation and applies the one
    numbered ``target`` (or none, -1, to only list them in ``found``). Message text
    (f-strings), annotations and the ``__main__`` guard are not mutated."""

    def __init__(self, target: int = -1):
        self.target = target
        self.count = 0
        self.found: List[Tuple[int, str]] = []

    def _offer(self, node: ast.AST, make) -> Optional[ast.AST]:
        i = self.count
        self.count += 1
        if self.target == -1:
            new = make()
            before = ast.unparse(node)
            after = ast.unparse(new)
            self.found.append((node.lineno, f"{_short(before)}  ->  {_short(after)}"))
            return None
        if i == self.target:
            return ast.copy_location(make(), node)
        return None

    def generic_visit(self, node):
        if isinstance(node, ast.JoinedStr) or _is_main_guard(node):
            return node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # decorators, body and default values; not the annotations
            for field in ("decorator_list", "body"):
                setattr(node, field, [self.visit(n) for n in getattr(node, field)])
            node.args.defaults = [self.visit(n) for n in node.args.defaults]
            node.args.kw_defaults = [n if n is None else self.visit(n)
                                     for n in node.args.kw_defaults]
            return node
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                node.value = self.visit(node.value)
            return node
        return super().generic_visit(node)

    def visit(self, node):
        new = None
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOP:
            new = self._offer(node, lambda: ast.BinOp(node.left, _BINOP[type(node.op)](),
                                                      node.right))
        elif isinstance(node, ast.AugAssign) and type(node.op) in _BINOP:
            new = self._offer(node, lambda: ast.AugAssign(node.target,
                                                          _BINOP[type(node.op)](), node.value))
        elif isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in _CMPOP:
                    ops = list(node.ops)
                    ops[k] = _CMPOP[type(op)]()
                    new = new or self._offer(
                        node, lambda ops=ops: ast.Compare(node.left, ops, node.comparators))
        elif isinstance(node, ast.BoolOp):
            new = self._offer(node, lambda: ast.BoolOp(_BOOLOP[type(node.op)](), node.values))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            new = self._offer(node, lambda: node.operand)
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            new = self._offer(node, lambda: ast.Constant(not node.value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            new = self._offer(node, lambda: ast.Constant(node.value + 1))
        if new is not None:
            return new
        return self.generic_visit(node)


def _short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def list_mutants(path: Path) -> List[Tuple[int, str]]:
    m = Mutator()
    m.visit(ast.parse(path.read_text(encoding="utf-8")))
    return m.found


def mutated_source(path: Path, index: int) -> str:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    m = Mutator(index)
    tree = m.visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


# ---------------------------------------------------------------------------------------
# running the tests of one mutant

class _Failures:
    """pytest plugin: the ids of failed tests."""

    def __init__(self):
        self.failed: List[str] = []

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed.append(report.nodeid)

    def pytest_collectreport(self, report):
        if report.failed:
            self.failed.append(f"collect {report.nodeid}")


def run_tests(copy: Path, args: Sequence[str], timeout: float, stop_first: bool = True
              ) -> Tuple[str, List[str], float]:
    """('passed' | 'failed' | 'timeout', failed test ids, seconds) of pytest ``args`` run in
    ``copy`` by a forked child (its own process group, killed on timeout)."""
    fd, out = tempfile.mkstemp(prefix="mutation.", suffix=".json")
    os.close(fd)
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            os.setpgid(0, 0)
            os.chdir(copy)
            sys.path.insert(0, str(copy))
            os.environ["PYTHONPATH"] = str(copy)
            os.environ.pop("ESPNET_IML_NO_AUTOLOAD", None)
            # no .pyc: a mutant of the same size written in the same second as the
            # original would otherwise be shadowed by the original's cached bytecode
            sys.dont_write_bytecode = True
            os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            import pytest

            rec = _Failures()
            opts = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly"] + (["-x"] if stop_first else [])
            rc = pytest.main(opts + list(args), plugins=[rec])
            Path(out).write_text(json.dumps({"rc": int(rc), "failed": rec.failed}))
            code = 0
        finally:
            os._exit(code)
    status = None
    while time.monotonic() - t0 < timeout:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        status = "timeout"
    seconds = time.monotonic() - t0
    failed: List[str] = []
    if status is None:
        try:
            result = json.loads(Path(out).read_text() or "{}")
        except ValueError:
            result = {}
        failed = result.get("failed", [])
        if result.get("rc") == 0:
            status = "passed"
        elif failed:
            status = "failed"
        else:  # the child crashed, or pytest found no test: count as killed, say why
            status = "failed"
            failed = [f"pytest exit code {result.get('rc', 'none: the child died')}"]
    Path(out).unlink(missing_ok=True)
    return status, failed, seconds


def make_copy() -> Path:
    """A private copy of what the tests need: the package, the tests, pytest's config."""
    copy = Path(tempfile.mkdtemp(prefix="espnet_iml-mutation."))
    shutil.copytree(ROOT / "espnet_iml", copy / "espnet_iml",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", copy / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "setup.cfg", copy / "setup.cfg")
    return copy


def _preload() -> None:
    """Heavy imports done once in the parent, shared by every forked child."""
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import torch

    torch.set_num_threads(1)
    import typeguard  # noqa: F401
    import espnet2.asr.encoder.abs_encoder  # noqa: F401
    import espnet2.text.char_tokenizer  # noqa: F401
    import soundfile  # noqa: F401
    for optional in ("sentencepiece", "kaldiio", "torchaudio", "matplotlib", "yaml"):
        try:
            __import__(optional)
        except ImportError:  # pragma: no cover
            pass
    assert "espnet_iml" not in sys.modules, "the parent must not import espnet_iml"


def _with_mutant(copy: Path, rel: str, source: str, args: Sequence[str], timeout: float,
                 stop_first: bool = True):
    target = copy / rel
    original = target.read_text(encoding="utf-8")
    target.write_text(source, encoding="utf-8")
    try:
        return run_tests(copy, args, timeout, stop_first)
    finally:
        target.write_text(original, encoding="utf-8")


# ---------------------------------------------------------------------------------------
# commands

def cmd_count(_args) -> int:
    total = 0
    for rel in TESTS:
        n = len(list_mutants(ROOT / rel))
        total += n
        print(f"{n:5d}  {rel}")
    print(f"{total:5d}  in all")
    return 0


def cmd_known(args) -> int:
    copy = make_copy()
    missed = 0
    try:
        base = {}
        for rel, old, new, what in KNOWN:
            src = (ROOT / rel).read_text(encoding="utf-8")
            if src.count(old) != 1:
                print(f"CANNOT APPLY (the code changed): {rel}: {old!r}")
                missed += 1
                continue
            tests = TESTS[rel]
            key = tuple(tests)
            if key not in base:
                status, failed, _ = run_tests(copy, tests, args.timeout, stop_first=False)
                if status != "passed":
                    raise SystemExit(f"the unmutated code fails {tests}: {failed}")
                base[key] = status
            status, failed, secs = _with_mutant(copy, rel, src.replace(old, new), tests,
                                                args.timeout, stop_first=False)
            killed = status != "passed"
            missed += not killed
            print(f"{'KILLED ' if killed else 'MISSED '} {what} ({rel}, {secs:.0f} s)")
            for f in failed:
                print(f"    {f}")
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    print(f"{len(KNOWN) - missed} of {len(KNOWN)} known bugs caught")
    return 1 if missed else 0


def _sample(n: int, seed: int, files: Sequence[str]) -> List[Tuple[str, int, int, str]]:
    """(file, index, line, description) of ``n`` mutants spread over ``files``."""
    found = {rel: list_mutants(ROOT / rel) for rel in files}
    mass = {rel: WEIGHT.get(rel, 1.0) * len(found[rel]) for rel in files}
    total = sum(mass.values())
    rng = random.Random(seed)
    chosen = []
    for rel in files:
        k = min(len(found[rel]), max(1, round(n * mass[rel] / total))) if found[rel] else 0
        for i in sorted(rng.sample(range(len(found[rel])), k)):
            line, desc = found[rel][i]
            chosen.append((rel, i, line, desc))
    return chosen


def cmd_sample(args) -> int:
    files = args.files or list(TESTS)
    chosen = _sample(args.n, args.seed, files)
    print(f"{len(chosen)} mutants over {len(files)} files (seed {args.seed})", flush=True)
    copy = make_copy()
    results = []
    t_start = time.monotonic()
    try:
        base_time: Dict[str, float] = {}
        for rel in files:
            key = " ".join(TESTS[rel])
            if key not in base_time:
                status, failed, secs = run_tests(copy, TESTS[rel], 1800)
                if status != "passed":
                    raise SystemExit(f"the unmutated code fails {TESTS[rel]}: {failed}")
                base_time[key] = secs
        for k, (rel, index, line, desc) in enumerate(chosen, 1):
            limit = max(60.0, 5 * base_time[" ".join(TESTS[rel])])
            try:
                source = mutated_source(ROOT / rel, index)
                compile(source, rel, "exec")
            except (SyntaxError, ValueError) as exc:  # pragma: no cover
                results.append(dict(file=rel, index=index, line=line, mutant=desc,
                                    status="invalid", failed=[str(exc)], seconds=0.0))
                continue
            status, failed, secs = _with_mutant(copy, rel, source, TESTS[rel], limit)
            state = {"passed": "survived", "failed": "killed", "timeout": "killed (timeout)"}[status]
            results.append(dict(file=rel, index=index, line=line, mutant=desc, status=state,
                                failed=failed[:1], seconds=round(secs, 1)))
            print(f"[{k}/{len(chosen)}] {state:16s} {rel}:{line}  {desc}", flush=True)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    killed = sum(r["status"].startswith("killed") for r in results)
    valid = sum(r["status"] != "invalid" for r in results)
    print(f"killed {killed} of {valid} ({100.0 * killed / max(valid, 1):.1f} %), "
          f"{time.monotonic() - t_start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(seed=args.seed, n=args.n, results=results),
                                              indent=1, ensure_ascii=False))
    return 0


def cmd_rerun(args) -> int:
    """Run the survivors of an earlier ``sample --json`` again (after adding tests)."""
    earlier = json.loads(Path(args.json_in).read_text())
    survivors = [r for r in earlier["results"] if r["status"] == "survived"
                 and (not args.files or r["file"] in args.files)]
    copy = make_copy()
    still = 0
    try:
        for r in survivors:
            rel = r["file"]
            found = list_mutants(ROOT / rel)
            if r["index"] >= len(found) or found[r["index"]][1] != r["mutant"]:
                print(f"CHANGED  {rel}:{r['line']}  {r['mutant']} (the file changed; skipped)")
                continue
            status, failed, _ = _with_mutant(copy, rel, mutated_source(ROOT / rel, r["index"]),
                                             TESTS[rel], 600)
            still += status == "passed"
            state = "survived" if status == "passed" else f"killed by {failed[0] if failed else status}"
            print(f"{rel}:{r['line']}  {r['mutant']}\n    {state}", flush=True)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    print(f"{len(survivors) - still} of {len(survivors)} earlier survivors now killed")
    return 0


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python tools/mutation.py",
                                description="Mutation testing of espnet_iml (see docs/mutation.md).")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("count", help="mutants per file")
    k = sub.add_parser("known", help="issue 12's bugs: each must make a test fail")
    k.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    s = sub.add_parser("sample", help="run a seeded sample of mutants")
    s.add_argument("--n", type=int, default=150, help="about this many mutants (default 150)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--files", nargs="*", help="only these files (default: all in TESTS)")
    s.add_argument("--json", help="write every result here")
    r = sub.add_parser("rerun", help="run the survivors of an earlier sample again")
    r.add_argument("json_in", help="the --json file of an earlier sample")
    r.add_argument("--files", nargs="*", help="only survivors in these files")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    if args.cmd == "count":
        return cmd_count(args)
    if not os.environ.get("ESPNET_IML_NO_AUTOLOAD"):
        # the venv's .pth would import the checkout's espnet_iml into the parent, and every
        # child would then test it instead of the mutant: start again without it
        os.environ["ESPNET_IML_NO_AUTOLOAD"] = "1"
        os.execv(sys.executable, [sys.executable, __file__, *(argv or sys.argv[1:])])
    _preload()
    return {"known": cmd_known, "sample": cmd_sample, "rerun": cmd_rerun}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
