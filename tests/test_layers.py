"""The layers, held by their imports: the core imports no edge, no Flask and no kind; a kind
imports no edge; a function imports no kind and no other function; no module imports itself
in a circle; there is one list of the functions; and a function does not load at start what
only another function runs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from local.functions import FUNCTIONS, REPO

# package prefix -> imports it may not make (a prefix matches itself and its submodules)
FORBIDDEN = {
    "shared.core": ("flask", "functions_framework", "werkzeug", "shared.web", "shared.kinds"),
    "shared.kinds": ("flask", "functions_framework", "werkzeug", "shared.web"),
    "shared.web": ("shared.kinds",),
    # A function picks a view and calls the core; a kind reaches it through the registry.
    "functions": ("shared.kinds",),
}


def imported_modules(source: str, at_run_time: bool = False) -> set[str]:
    """Every module a source imports statically (relative imports are not used here);
    `at_run_time`: not those under `if TYPE_CHECKING:`, which only a type checker runs."""
    tree = ast.parse(source)
    if at_run_time:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(package: str, source: str) -> list[str]:
    return [
        module
        for module in sorted(imported_modules(source))
        for forbidden in FORBIDDEN[package]
        if _within(module, forbidden)
    ]


def modules_of(package: str) -> dict[str, str]:
    folder = REPO / Path(*package.split("."))
    return {str(path.relative_to(REPO)): path.read_text() for path in sorted(folder.rglob("*.py"))}


def test_each_layer_imports_only_what_is_below_it():
    broken = {
        path: found
        for package in FORBIDDEN
        for path, source in modules_of(package).items()
        if (found := violations(package, source))
    }
    assert broken == {}


def test_the_import_check_catches_a_core_module_that_imports_the_edge_flask_or_a_kind():
    planted = "import flask\nfrom shared.web.service import Service\nfrom shared.kinds import newsletter\n"
    assert violations("shared.core", planted) == [
        "flask",
        "shared.kinds",
        "shared.kinds.newsletter",
        "shared.web.service",
        "shared.web.service.Service",
    ]


def test_the_import_check_catches_a_function_that_imports_a_kind():
    planted = "from shared.kinds.newsletter.sources import list_sources\nfrom shared.web import pages\n"
    assert violations("functions", planted) == [
        "shared.kinds.newsletter.sources",
        "shared.kinds.newsletter.sources.list_sources",
    ]


def test_no_function_imports_another_and_the_function_list_matches_the_folders():
    folders = sorted(path.name for path in (REPO / "functions").iterdir() if (path / "main.py").exists())
    assert sorted(FUNCTIONS) == folders
    for name in FUNCTIONS:
        imports = imported_modules((REPO / "functions" / name / "main.py").read_text())
        assert not [m for m in imports if m == "main" or _within(m, "functions")], name


def test_the_core_finds_the_built_in_kinds_through_their_registration():
    from shared.core.handlers import builtin_kinds  # noqa: PLC0415

    assert {"newsletter", "demo"} <= set(builtin_kinds())
    named = {
        path: node.value
        for path, source in modules_of("shared.core").items()
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("shared.kinds.")
    }
    assert named == {}, "the core names a kind's module"


def import_graph(packages: tuple[str, ...] = ("shared",)) -> dict[str, set[str]]:
    """Module -> the modules of the tree it imports, anywhere in its source (an import inside
    a function closes a circle as surely as one at the top)."""
    sources = {}
    for package in packages:
        for path, source in modules_of(package).items():
            module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            sources[module] = source
    return {
        module: imported_modules(source, at_run_time=True) & (set(sources) - {module})
        for module, source in sources.items()
    }


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle of imports (a strongly connected group of more than one module), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.get(module, ())):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_no_module_imports_itself_in_a_circle():
    assert import_cycles(import_graph()) == []


def test_the_circle_check_catches_the_settings_circle_the_tree_once_had():
    graph = import_graph()
    graph["shared.core.settings"] = graph["shared.core.settings"] | {"shared.core.handlers"}  # the old kind_settings
    assert ["shared.core.db", "shared.core.handlers", "shared.core.settings"] in [
        [module for module in cycle if module in ("shared.core.db", "shared.core.handlers", "shared.core.settings")]
        for cycle in import_cycles(graph)
    ]


# -- what a function loads at start ----------------------------------------------------------

# Modules only some functions run: the runner and its watcher (process), the maintenance
# services (sweep, at its first tick). Another function loading them pays for them at every
# cold start (docs/performance.md).
RUN_ONLY_BY = {
    "shared.core.runner": ("process",),
    "shared.core.watcher": ("process",),
    "shared.core.claimfloor": ("process",),
    "shared.core.maintenance": (),
}
LOADED_AT_START = """
import json, sys, functions_framework
functions_framework.create_app(target=sys.argv[1], source=f"functions/{sys.argv[1]}/main.py")
print(json.dumps(sorted(sys.modules)))
"""


def test_a_function_does_not_load_at_start_what_only_another_function_runs():
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://unused@127.0.0.1:1/x", "API_TOKEN": "t"}
    for function in FUNCTIONS:
        done = subprocess.run(
            [sys.executable, "-c", LOADED_AT_START, function], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        loaded = json.loads(done.stdout.strip().splitlines()[-1])
        for module, runners in RUN_ONLY_BY.items():
            if function not in runners:
                assert module not in loaded, f"{function} loads {module} at start"
