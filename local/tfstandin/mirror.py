"""A filesystem_mirror of the stand-in providers and a Terraform CLI config that uses only it.

Terraform installs providers from a filesystem mirror in the "unpacked" layout,
HOST/NAMESPACE/TYPE/VERSION/TARGET/terraform-provider-TYPE_vVERSION, under the version
constraints of the configuration it is given: so infra/'s real `required_providers` select the
stand-ins at exactly the versions the schemas were generated from.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path

from local.tfstandin.protocol import certificate

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def target() -> str:
    machine = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    return f"{sys.platform}_{machine}"


def build(folder: Path) -> Path:
    """Write the mirror and the CLI config under `folder`; return the CLI config's path."""
    mirror = folder / "mirror"
    tls = folder / "tls"
    if not tls.is_dir():
        tls.mkdir(parents=True)
        for name, data in zip(("key.pem", "cert.pem", "cert.der"), certificate(), strict=True):
            (tls / name).write_bytes(data)
    for schema_file in sorted((HERE / "schemas").glob("*.json")):
        name = schema_file.stem
        version = json.loads(schema_file.read_text())["version"]
        where = mirror / "registry.terraform.io" / "hashicorp" / name / version / target()
        where.mkdir(parents=True, exist_ok=True)
        script = where / f"terraform-provider-{name}_v{version}"
        script.write_text(
            "#!/bin/sh\n"
            f"# The stand-in {name} provider (local/tfstandin), for offline tests only.\n"
            f"export PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
            f"export STANDIN_TLS={shlex.quote(str(tls))}\n"
            f"exec {shlex.quote(sys.executable)} -m local.tfstandin.provider {name}\n"
        )
        script.chmod(0o755)
    config = folder / "terraformrc"
    config.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(mirror))}\n"
        '    include = ["registry.terraform.io/hashicorp/*"]\n'
        "  }\n"
        "}\n"
    )
    return config


def environment(folder: Path, world: Path) -> dict[str, str]:
    """The environment Terraform runs in: our CLI config, no checkpoint calls, the simulated cloud."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(
        TF_CLI_CONFIG_FILE=str(build(folder)),
        TF_IN_AUTOMATION="1",
        CHECKPOINT_DISABLE="1",
        TF_PLUGIN_CACHE_DIR="",
        STANDIN_WORLD=str(world),
    )
    return env
