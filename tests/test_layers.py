"""The layers, held by their imports: the core imports no edge, no Flask and no kind; a kind
imports no edge; no function imports another; and there is one list of the functions."""

from __future__ import annotations

import ast
from pathlib import Path

from local.functions import FUNCTIONS, REPO

# package prefix -> imports it may not make (a prefix matches itself and its submodules)
FORBIDDEN = {
    "shared.core": ("flask", "functions_framework", "werkzeug", "shared.web", "shared.kinds"),
    "shared.kinds": ("flask", "functions_framework", "werkzeug", "shared.web"),
    "shared.web": ("shared.kinds",),
}


def imported_modules(source: str) -> set[str]:
    """Every module a source imports statically (relative imports are not used here)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
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
