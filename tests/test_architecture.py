"""The package's structure as checked facts: the import-linter contracts of pyproject.toml
hold, no module imports another in a cycle (also through function-level imports), and no
module reaches into another's private names."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

SRC = Path(__file__).resolve().parents[1] / "src" / "anpyc"


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    adj = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(adj):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(grimp.build_graph("anpyc")) == []


def test_cycle_finder_finds_a_cycle():
    class Fake:
        modules = {"a", "b", "c"}

        @staticmethod
        def find_modules_directly_imported_by(m):
            return {"a": {"b"}, "b": {"a"}, "c": {"a"}}[m]

    assert _cycles(Fake()) == [["a", "b"]]


def test_no_private_names_imported_across_modules():
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("anpyc"):
                offenders += [f"{path.relative_to(SRC)}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is a dev dependency (pip install -e '.[dev]')"
    proc = subprocess.run([exe, "--no-cache"], cwd=SRC.parents[1], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "broken" in proc.stdout and " 0 broken" in proc.stdout


TRAINING_HOOKS = {"before_task", "training_data", "penalty", "before_step", "after_step", "after_task",
                  "eval_context", "predict", "inferred_tasks", "attach"}


def _hook_calls(path: Path) -> list[str]:
    """``file:line name`` of every call ``<something>.<hook>(...)`` in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.name}:{node.lineno} {node.func.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in TRAINING_HOOKS]


def test_only_the_loop_calls_the_training_hooks():
    """train.py is the one caller of a method's hooks; methods may call their own (``super()``,
    a helper's), nothing else in the package may."""
    outside = [call for path in sorted(SRC.rglob("*.py"))
               if path.name != "train.py" and "methods" not in path.relative_to(SRC).parts
               for call in _hook_calls(path)]
    assert not outside, f"hooks called outside the loop: {outside}"
    assert {c.split()[1] for c in _hook_calls(SRC / "loop" / "train.py")} >= {"before_task", "after_task", "penalty", "eval_context"}


#: where a function is read at once: at most this many lines, signature and docstring included
MAX_FUNCTION_LINES = 60


def test_functions_of_the_loop_runner_methods_and_problem_kinds_are_short():
    paths = [*(SRC / "loop").rglob("*.py"), SRC / "runner.py", *(SRC / "methods").rglob("*.py"),
             *(SRC / "problems").rglob("*.py")]
    long = [f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in paths for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []



ANNOTATION_RULES = "ANN001,ANN201,ANN202"  # an argument, a public and a private return without a type


def _ruff_annotations(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert exe is not None, "ruff is a dev dependency (pip install -e '.[dev]')"
    return subprocess.run([exe, "check", "--no-cache", "--select", ANNOTATION_RULES, *args],
                          cwd=SRC.parents[1], capture_output=True, text=True)


def test_every_function_in_the_package_has_type_hints():
    proc = _ruff_annotations("src")
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_the_type_hint_check_finds_a_bare_argument_and_return(tmp_path):
    (tmp_path / "bare.py").write_text("class A:\n    def f(self, x): ...\n    def __init__(self, y: int): ...\n"
                                      "def g(z: int) -> None: ...\n")
    proc = _ruff_annotations("--isolated", "--output-format", "concise", str(tmp_path / "bare.py"))
    flagged = sorted(line.split(": ", 1)[1].split()[0] for line in proc.stdout.splitlines() if "bare.py:" in line)
    assert proc.returncode == 1 and flagged == ["ANN001", "ANN201"], proc.stdout
