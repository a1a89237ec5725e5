"""Does the package compute what it computed at an earlier commit, type hints and docstrings aside?

The bench records say which commit's source they ran (docs/benchmarks/README.md). A commit that
only adds or changes type hints or docstrings cannot change a result; this script shows that a
range of commits is of that kind: it compares each changed ``src/`` file's syntax tree at
``BASE`` and in the working tree with every annotation of a function's arguments and return,
every ``if TYPE_CHECKING:`` block, every import from ``typing`` or ``__future__`` and every
docstring (of a module, class or function), every annotation of a function's local variables
(never evaluated), every ``@overload`` signature (the implementation after it replaces it) and
the body of every ``Protocol`` not marked ``runtime_checkable`` (a type, never instantiated nor
checked at run time) removed, and then every name imported from the package itself (``from
anpyc... import name``) that the rest of the module no longer uses (a hint that named it moved
under ``TYPE_CHECKING``; the package's own modules are imported for their names, with no effect
on a run). Class-level annotations (dataclass fields), imports from outside the package and
all other code still count. (``anpyc list methods`` prints the first sentence of a method's
docstring; no run reads one.)

    python docs/scripts/same_code.py f615b54

prints the files that differ beyond annotations and docstrings and exits 1 if there are any, 0
if none.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


class _DropHintsAndDocstrings(ast.NodeTransformer):
    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef | None:
        if any(_name(d) == "overload" for d in node.decorator_list):  # the implementation replaces it
            return None
        node.returns = None
        for inner in _own_statements(node):  # a local variable's annotation is never evaluated
            if isinstance(inner, ast.AnnAssign):
                inner.annotation = ast.Constant(None)
        return self._without_docstring(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        if _static_protocol(node):  # never instantiated nor checked at run time: hints only
            node.body = [ast.Pass()]
        return self._without_docstring(node)

    def visit_Module(self, node: ast.Module) -> ast.Module:
        return self._without_docstring(node)

    def _without_docstring(self, node: ast.AST) -> ast.AST:
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> ast.If | None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return None
        self.generic_visit(node)
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.ImportFrom | None:
        return None if node.module in ("typing", "__future__") else node


def _own_statements(function: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``function``'s body outside the classes and functions it defines."""
    for child in ast.iter_child_nodes(function):
        if not isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield child
            yield from _own_statements(child)


def _name(node: ast.AST) -> str | None:
    """``X`` of a name ``X`` or an attribute ``a.X``."""
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)


def _static_protocol(node: ast.ClassDef) -> bool:
    """A ``typing.Protocol`` subclass not marked ``runtime_checkable``."""
    decorators = {_name(d) for d in node.decorator_list}
    return "Protocol" in {_name(b) for b in node.bases} and "runtime_checkable" not in decorators


def _drop_unused_package_imports(tree: ast.Module) -> ast.Module:
    """Drop names imported from ``anpyc`` that nothing else in ``tree`` reads (a string
    constant counts, for ``__all__``), and an import left with no names."""
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and (node.level > 0 or (node.module or "").split(".")[0] == "anpyc")]
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    used |= {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    for node in imports:
        node.names = [a for a in node.names if a.name == "*" or (a.asname or a.name) in used]

    class _DropEmpty(ast.NodeTransformer):
        def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.ImportFrom | None:
            return node if node.names else None

    return _DropEmpty().visit(tree)


def code_tree(source: str) -> str:
    """The syntax tree of ``source`` with function annotations, typing-only imports,
    docstrings and the package's imports left unused by that removed."""
    tree = _DropHintsAndDocstrings().visit(ast.parse(source))
    return ast.dump(_drop_unused_package_imports(tree))


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def differing_files(repo: Path, base: str) -> tuple[list[str], list[str]]:
    """(changed ``src/`` Python files, those among them that differ beyond annotations and docstrings)."""
    changed = [f for f in _git(repo, "diff", "--name-only", base, "--", "src").split() if f.endswith(".py")]
    differ = []
    for name in changed:
        path = repo / name
        if not path.is_file():  # removed since base
            differ.append(name)
            continue
        try:
            old = _git(repo, "show", f"{base}:{name}")
        except subprocess.CalledProcessError:  # added since base
            differ.append(name)
            continue
        if code_tree(old) != code_tree(path.read_text(encoding="utf-8")):
            differ.append(name)
    return changed, differ


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python docs/scripts/same_code.py BASE", file=sys.stderr)
        return 2
    repo = Path(__file__).resolve().parents[2]
    try:
        changed, differ = differing_files(repo, argv[0])
    except subprocess.CalledProcessError as exc:
        print(f"same_code.py: git failed: {exc.stderr.strip().splitlines()[-1] if exc.stderr else exc}", file=sys.stderr)
        return 2
    for name in differ:
        print(f"differs beyond annotations and docstrings: {name}")
    print(f"{len(changed)} src files changed since {argv[0]}, {len(differ)} beyond annotations and docstrings")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
