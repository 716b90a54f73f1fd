"""The package's layering, read from its source: no import circle between sweeper's modules, no module
over 500 lines, Ray imported only under sweeper/tuning and MLflow only under sweeper/tracking (the edges),
the read side and the dry-run plan independent of the write path."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sweeper

ROOT = Path(sweeper.__file__).resolve().parent
MAX_LINES = 500


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports inside functions count: a circle through
    them still ties the two modules together)."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # `from . import tracking` names a module
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (imports for annotations never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", getattr(child.test, "attr", "")) == "TYPE_CHECKING":
                todo.extend(child.orelse)
                continue
            todo.append(child)


SOURCES = sorted(p for p in ROOT.rglob("*.py") if "search_spaces" not in p.parts and "experiments" not in p.parts)
MODULES = {_module(p): p for p in SOURCES}


def _graph() -> dict[str, set[str]]:
    """Module -> the sweeper modules it imports (a package's own submodules excluded: __init__ re-exports)."""
    graph = {}
    for name, path in MODULES.items():
        deps = {d for d in _imports(path) if d in MODULES and d != name}
        if path.name == "__init__.py":
            deps = {d for d in deps if not d.startswith(name + ".")}
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_between_sweepers_modules():
    assert _cycle(_graph()) is None


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_500_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("library, edge", [("ray", "sweeper.tuning"), ("mlflow", "sweeper.tracking")])
def test_each_library_is_imported_only_at_its_edge(library, edge):
    outside = [name for name, path in MODULES.items()
               if not (name == edge or name.startswith(edge + "."))
               and any(d == library or d.startswith(library + ".") for d in _imports(path))]
    assert outside == []


def test_the_read_side_and_the_plan_do_not_depend_on_the_write_path():
    graph = _graph()
    for reader in ("sweeper.readback", "sweeper.plan", "sweeper.listener"):
        assert "sweeper.sweep" not in graph[reader], reader


def test_storage_is_transport_only():
    assert not {d for d in _graph()["sweeper.storage"] if d in ("sweeper.scenario", "sweeper.basecache")}


def test_the_default_work_directory_is_written_once():
    """It was spelt out in nine places; now `workdir.DEFAULT_WORKDIR` (docstrings may mention it)."""
    from sweeper.workdir import DEFAULT_WORKDIR

    literal = repr(DEFAULT_WORKDIR).replace("'", '"')
    holders = [name for name, path in MODULES.items() if literal in path.read_text()]
    assert holders == ["sweeper.workdir"]


def test_a_trial_takes_its_budgets_from_its_config_only():
    """No second copy of the quickstart's budgets as a trial default: a config without budgets is refused."""
    import dataclasses

    from sweeper.trial import TrialConfig

    budgets = next(f for f in dataclasses.fields(TrialConfig) if f.name == "budgets")
    assert budgets.default is dataclasses.MISSING and budgets.default_factory is dataclasses.MISSING


def test_every_package_folder_is_installed():
    """pyproject.toml lists the packages a non-editable install ships; a new folder left off it imports
    from a checkout and fails on every installed machine (CI found sweeper.report missing)."""
    import tomllib

    repo = Path(__file__).resolve().parents[2]  # the checkout, not the installed copy (which lacks what is unlisted)
    listed = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(repo).parts) for p in (repo / "sweeper").rglob("__init__.py")}
    assert folders - listed == set()
