"""The five functions, in the order a job meets them. The one list that code reads: the
local stack, the bundles, the tests and the benchmarks; tests/test_layers.py holds it to
the folders in functions/ and tests/test_infra.py holds infra/ to it."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = ("enqueue", "process", "status", "cancel", "sweep")


def function_source(name: str) -> Path:
    return REPO / "functions" / name / "main.py"


# Every per-caller limit turned off, for a harness whose one caller makes every request (the
# fuzzer, make bench, the fault campaign): each limit has tests of its own. A new limit goes here.
NO_RATE_LIMITS = dict.fromkeys(
    (
        "RATE_LIMIT_ENQUEUE",
        "RATE_LIMIT_JOBS",
        "RATE_LIMIT_CANCEL",
        "RATE_LIMIT_STATUS",
        "RATE_LIMIT_STREAMS",
        "RATE_LIMIT_AUTH_FAILURES",
    ),
    "0",
)
