"""The five functions, in the order a job meets them. The one list that code reads: the
local stack, the bundles, the tests and the benchmarks; tests/test_layers.py holds it to
the folders in functions/ and tests/test_infra.py holds infra/ to it."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = ("enqueue", "process", "status", "cancel", "sweep")


def function_source(name: str) -> Path:
    return REPO / "functions" / name / "main.py"
