"""make plan / make deploy: build the bundles, then terraform init and plan (or apply) in infra/.

Everything that can be checked is checked first, and every problem is named in one message,
before anything is built or changed: terraform on PATH, Google credentials, and
infra/terraform.tfvars with project_id.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from local.bundle import REPO, build_all

INFRA = REPO / "infra"
TFVARS = INFRA / "terraform.tfvars"


def _has_credentials() -> bool:
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN"):
        return True
    adc = (
        Path(os.environ.get("CLOUDSDK_CONFIG", Path.home() / ".config" / "gcloud"))
        / "application_default_credentials.json"
    )
    return adc.exists()


def problems() -> list[str]:
    found = []
    if shutil.which("terraform") is None:
        found.append("terraform is not on PATH (install Terraform 1.5 or newer)")
    if not _has_credentials():
        found.append(
            "no Google credentials: run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS)"
        )
    if not TFVARS.exists():
        found.append(f"{TFVARS.relative_to(REPO)} is missing: copy infra/terraform.tfvars.example and fill it in")
    elif not re.search(r'^\s*project_id\s*=\s*"[^"]+"', TFVARS.read_text(), re.MULTILINE):
        found.append(f"{TFVARS.relative_to(REPO)} must set project_id")
    return found


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "plan"
    if action not in ("plan", "apply"):
        print("usage: python -m local.deploy plan|apply", file=sys.stderr)
        return 2
    missing = problems()
    if missing:
        print("Cannot deploy; nothing was changed:\n  - " + "\n  - ".join(missing), file=sys.stderr)
        return 1
    build_all()
    terraform = ["terraform", f"-chdir={INFRA}"]
    subprocess.run([*terraform, "init", "-input=false"], check=True)
    subprocess.run([*terraform, action, "-input=false", f"-var-file={TFVARS.name}"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
