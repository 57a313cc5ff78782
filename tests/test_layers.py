"""The house's rules (DESIGN.md §1), read from the code: imports point down the layers, a
folder is entered only through its ``__init__`` (the names it exports on purpose), and an
upward import exists only as one of the named lazy façades.

The imports are read with ``ast`` from every ``jaxlr/**/*.py``: module-level ones, and the
ones inside functions (lazy). The test that the checker itself catches each kind of breach runs
it on small made-up sources.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "jaxlr"

# folder -> the folders it may import from at module level (down the layers, or across the
# middle where the contract says so: the finder runs on the engine)
ALLOWED = {
    "_optim": set(),
    "_diagnose": {"_optim"},
    "_sweep": {"_optim"},
    "_finder": {"_optim", "_sweep"},
    "_plot": {"_optim", "_sweep", "_finder", "_diagnose"},
    "_records": {"_optim", "_sweep", "_finder", "_diagnose"},
    "_cli": {"_optim", "_sweep", "_finder", "_diagnose", "_records", "_plot"},
}
# the only upward imports: lazy, inside these functions (DESIGN.md §1)
FACADES = {
    ("_sweep/result.py", "save"): "_records",
    ("_sweep/result.py", "plot"): "_plot",
    ("_sweep/result.py", "diagnose"): "_diagnose",
    ("_sweep/result.py", "sensitivity"): "_diagnose",
    ("_sweep/result.py", "table"): "_records",
    ("_sweep/api.py", "_records_for"): "_records",
    ("_finder/finder.py", "plot"): "_plot",
}


def imports(source: str):
    """(target module, names, enclosing function or None, line) for every jaxlr import."""
    tree = ast.parse(source)
    out = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef,
                                                     ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.append((child.module, [a.name for a in child.names], func, child.lineno))
            elif isinstance(child, ast.Import):
                out.extend((a.name, [], func, child.lineno) for a in child.names)
            visit(child, inner)

    visit(tree, None)
    return [i for i in out if i[0] == "jaxlr" or i[0].startswith("jaxlr.")]


def folder_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1].startswith("_") else None


def breaches(rel: str, source: str) -> list[str]:
    """What in one file breaks the rules (``rel``: its path under jaxlr/)."""
    here = rel.split("/")[0] if "/" in rel else None
    found = []
    for module, names, func, line in imports(source):
        there = folder_of(module)
        where = f"{rel}:{line} imports {module}"
        if here is None or there is None or there == here:
            continue  # jaxlr/__init__.py (the façade of everything), or inside one folder
        if len(module.split(".")) > 2:
            found.append(f"{where}: enter a folder through its __init__ (jaxlr.{there})")
        private = [n for n in names if n.startswith("_")]
        if private:
            found.append(f"{where}: private names {private} across folders")
        if there in ALLOWED[here]:
            continue
        if func is not None and FACADES.get((rel, func)) == there:
            continue
        kind = "lazily" if func is not None else "at module level"
        found.append(f"{where} {kind}: {here} may not depend on {there}")
    return found


def test_the_package_keeps_the_rules():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        found += breaches(rel, path.read_text())
    assert not found, "\n".join(found)


@pytest.mark.parametrize("rel, source, expected", [
    ("_optim/x.py", "from jaxlr._sweep import sweep\n", "_optim may not depend on _sweep"),
    ("_sweep/x.py", "from jaxlr._records import save\n", "at module level"),
    ("_sweep/x.py", "def f():\n    from jaxlr._records import save\n", "lazily"),
    ("_cli/x.py", "from jaxlr._sweep import _Program\n", "private names"),
    ("_cli/x.py", "from jaxlr._sweep.member import Program\n", "through its __init__"),
    ("_records/x.py", "def f():\n    from jaxlr._cli import build_task\n", "_records may not"),
])
def test_the_checker_catches_each_breach(rel, source, expected):
    assert any(expected in b for b in breaches(rel, source))


@pytest.mark.parametrize("rel, source", [
    ("_sweep/result.py", "def save(self):\n    from jaxlr._records import save\n"),
    ("_finder/finder.py", "def plot(self):\n    from jaxlr._plot import plot_finder\n"),
    ("_cli/x.py", "from jaxlr._records import load\nfrom jaxlr._sweep import sweep\n"),
    ("_sweep/x.py", "from jaxlr._sweep.member import Program\n"),
    ("__init__.py", "from jaxlr._sweep import sweep\n"),
])
def test_the_checker_allows_what_the_rules_allow(rel, source):
    assert breaches(rel, source) == []
