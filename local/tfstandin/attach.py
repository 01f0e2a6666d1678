"""The stand-in providers started once for many Terraform commands, which reattach to them.

Terraform starts every provider afresh for each command, twice (once for its schema, once for the
work), and a stand-in's start (Python, grpcio, protobuf, the schema) costs more CPU than the
little work it then does. Under TF_REATTACH_PROVIDERS, Terraform (1.11 included) instead
connects to providers already running, for plan, apply, validate and state alike, and `init`
skips installing them (the filesystem mirror stays, for a run without reattaching).

A stand-in reads its settings (STANDIN_WORLD, STANDIN_FAIL_CREATE, STANDIN_TIME_SCALE) when it
starts, so each simulated cloud gets its own started stand-ins: `attached(env)` starts them with
`env`, yields `env` with TF_REATTACH_PROVIDERS pointing at them, and ends them on the way out.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from local.tfstandin.mirror import HERE, REPO
from local.tfstandin.protocol import REATTACH

PROVIDERS = tuple(sorted(p.stem for p in (HERE / "schemas").glob("*.json")))


def reattach_entry(pid: int, handshake: str) -> dict:
    """go-plugin's ReattachConfig for one provider, from its handshake line `1|6|unix|PATH|grpc|`."""
    parts = handshake.strip().split("|")
    if len(parts) != 6 or (parts[0], parts[1], parts[4]) != ("1", "6", "grpc"):
        raise RuntimeError(f"a stand-in provider did not start (its handshake: {handshake!r})")
    _, protocol_version, network, address, protocol, _ = parts
    return {
        "Protocol": protocol,
        "ProtocolVersion": int(protocol_version),
        "Pid": pid,
        "Test": True,
        "Addr": {"Network": network, "String": address},
    }


@contextlib.contextmanager
def attached(env: Mapping[str, str], folder: Path) -> Iterator[dict[str, str]]:
    """`env` plus TF_REATTACH_PROVIDERS, with the four stand-ins running under `env` meanwhile, in
    `folder`: the one Terraform runs in (-chdir), where a provider it starts would run, so that
    relative paths (archive_file's source_dir) mean the same."""
    started: list[subprocess.Popen] = []
    pythonpath = str(REPO) + (f":{env['PYTHONPATH']}" if env.get("PYTHONPATH") else "")
    provider_env = {**env, REATTACH: "1", "PYTHONPATH": pythonpath}
    try:
        for name in PROVIDERS:
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "local.tfstandin.provider", name],
                    env=provider_env,
                    cwd=folder,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        reattach = {}
        for name, process in zip(PROVIDERS, started, strict=True):
            handshake = process.stdout.readline()  # "" if it died: reattach_entry then says so
            reattach[f"registry.terraform.io/hashicorp/{name}"] = reattach_entry(process.pid, handshake)
        yield {**env, "TF_REATTACH_PROVIDERS": json.dumps(reattach)}
    finally:
        for process in started:
            process.stdin.close()  # its signal to stop
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()
