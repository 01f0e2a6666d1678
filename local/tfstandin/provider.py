"""A stand-in Terraform provider (hashicorp/google, random, archive or time) that plans and applies
against a simulated cloud kept in a JSON file, so that Terraform itself can evaluate, plan, apply
and re-plan the whole of infra/ offline.

    terraform-provider-<name>_v<version>  (a script the mirror installs) runs
    python -m local.tfstandin.provider <name>

What it does, for any resource type in schemas/<name>.json: plan leaves computed attributes that
the configuration does not set unknown (inside nested blocks too) and asks for replacement when a
ForceNew attribute changes (facts.json); apply fills every unknown with a deterministic value of
its type (a few types get the value Google would give, e.g. a service account's email); read
returns the state. Where Google refuses what Terraform allows, it refuses too (see refusals()).

The simulated cloud (STANDIN_WORLD, default .standin-world.json in Terraform's working folder)
holds a clock, advanced only by time_sleep (at its end: it sleeps 1/200 of its duration for
real meanwhile, STANDIN_TIME_SCALE), and when each log-based metric was created: Google
refuses an alert policy on a user metric younger than about ten minutes (hashicorp/terraform-
provider-google issue 11102), and so does the stand-in. STANDIN_FAIL_CREATE=type[=name][,...]
makes the creates of those types (or the one of that name) fail, to show that a second apply
finishes the first.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import string
import sys
import time
import zipfile
from pathlib import Path

from local.tfstandin.protocol import PB, UNKNOWN, dynamic, error, serve, value_of

HERE = Path(__file__).resolve().parent
METRIC_DELAY_SECONDS = 600  # "it could take up to 10 minutes" (Cloud Monitoring's own message)
# A time_sleep of 10 minutes lasts 3 s of real time (STANDIN_TIME_SCALE), then advances the clock.
TIME_SCALE = float(os.environ.get("STANDIN_TIME_SCALE") or 0.005)


def load_schema(name: str) -> dict:
    schema = json.loads((HERE / "schemas" / f"{name}.json").read_text())
    facts = json.loads((HERE / "facts.json").read_text())
    for row in facts["rows"]:
        kind = "data" if row.get("data") else "resources"
        block = schema[kind].get(row["type"]) if row["type"].startswith(f"{name}_") else None
        if block is None:
            continue
        *parents, leaf = row["path"].split(".")
        for parent in parents:
            block = block["blocks"][parent]["block"]
        if leaf in block["blocks"]:
            if "max_items" in row:
                block["blocks"][leaf]["max_items"] = row["max_items"]
            block["blocks"][leaf]["force_new"] = row.get("force_new", False)
            continue
        attribute = block["attributes"][leaf]
        for key in ("sensitive", "force_new"):
            if row.get(key):
                attribute[key] = True
    return schema


# -- the simulated cloud --------------------------------------------------------------------


@contextlib.contextmanager
def world():
    """The simulated cloud, locked: every provider process of one Terraform run shares it."""
    path = Path(os.environ.get("STANDIN_WORLD") or ".standin-world.json")
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(path.read_text()) if path.exists() else {"clock": 0, "metrics": {}}
        yield state
        path.write_text(json.dumps(state, indent=1, sort_keys=True))


def duration_seconds(text: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return int(sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", text or "")))


# -- values by schema -----------------------------------------------------------------------


def blank(kind):
    """A deterministic filler of a cty type, for a computed attribute nobody set."""
    if kind == "string":
        return ""
    if kind == "number":
        return 0
    if kind == "bool":
        return False
    if kind[0] in ("list", "set"):
        return []
    if kind[0] == "map":
        return {}
    if kind[0] == "object":
        return {name: None for name in kind[1]}
    return None


def mark_unknown(block: dict, planned, config, everything: bool = False):
    """Planned values: computed attributes the configuration leaves null become unknown."""
    if planned is None:
        return None
    out = dict(planned)
    config = config or {}
    for name, spec in block["attributes"].items():
        if spec.get("computed") and config.get(name) is None and (everything or planned.get(name) is None):
            out[name] = UNKNOWN
    for name, nested in block["blocks"].items():
        value, given = planned.get(name), config.get(name)
        if value is None or value is UNKNOWN:
            continue
        if nested["nesting"] == "SINGLE":
            out[name] = mark_unknown(nested["block"], value, given, everything)
        elif nested["nesting"] == "MAP":
            out[name] = {
                k: mark_unknown(nested["block"], v, (given or {}).get(k), everything) for k, v in value.items()
            }
        elif nested["nesting"] == "LIST":
            given = given if isinstance(given, list) else []
            out[name] = [
                mark_unknown(nested["block"], v, given[i] if i < len(given) else None, everything)
                for i, v in enumerate(value)
            ]
        else:  # SET: an element's configuration is the one that agrees on every non-computed attribute
            out[name] = [mark_unknown(nested["block"], v, _match(nested["block"], v, given), everything) for v in value]
    return out


def _match(block: dict, element, candidates):
    for candidate in candidates or []:
        if candidate is not None and all(
            candidate.get(n) == element.get(n) for n, s in block["attributes"].items() if not s.get("computed")
        ):
            return candidate
    return None


def fill(block: dict, value, hook, path=()):
    """Apply: every unknown becomes a value; `hook(path, type)` may give the one Google would give."""
    if value is None:
        return None
    out = dict(value)
    for name, spec in block["attributes"].items():
        if out.get(name) is UNKNOWN:
            given = hook((*path, name), spec["type"])
            out[name] = given if given is not None else blank(spec["type"])
    for name, nested in block["blocks"].items():
        got = out.get(name)
        if got is UNKNOWN:
            got = None if nested["nesting"] == "SINGLE" else ({} if nested["nesting"] == "MAP" else [])
        if got is None:
            out[name] = got
        elif nested["nesting"] == "SINGLE":
            out[name] = fill(nested["block"], got, hook, (*path, name))
        elif nested["nesting"] == "MAP":
            out[name] = {k: fill(nested["block"], v, hook, (*path, name)) for k, v in got.items()}
        else:
            out[name] = [fill(nested["block"], v, hook, (*path, name)) for v in got]
    return out


def force_new_changes(block: dict, prior, config, path=()) -> list[tuple[str, ...]]:
    """Paths of ForceNew attributes (or blocks) whose configured value differs from the state."""
    found = []
    prior, config = prior or {}, config or {}
    for name, spec in block["attributes"].items():
        if spec.get("force_new") and config.get(name) is not None and config.get(name) != prior.get(name):
            found.append((*path, name))
    for name, nested in block["blocks"].items():
        if nested.get("force_new") and _strip(nested["block"], config.get(name)) != _strip(
            nested["block"], prior.get(name)
        ):
            found.append((*path, name))
        elif nested["nesting"] in ("LIST", "SINGLE"):
            given, had = config.get(name), prior.get(name)
            pairs = [(given, had)] if nested["nesting"] == "SINGLE" else list(zip(given or [], had or []))
            for g, h in pairs:
                found += force_new_changes(nested["block"], h, g, (*path, name))
    return found


def _strip(block: dict, value):
    """A nested value without its computed-only attributes, for comparing config with state."""
    if isinstance(value, list):
        return [_strip(block, v) for v in value]
    if not isinstance(value, dict):
        return value
    keep = {n: value.get(n) for n, s in block["attributes"].items() if s.get("optional") or s.get("required")}
    for name, nested in block["blocks"].items():
        keep[name] = _strip(nested["block"], value.get(name))
    return keep


def schema_message(block: dict, version: int = 0):
    message = PB["Schema"](version=version)
    message.block.SetInParent()  # Terraform reads the block of every schema, empty or not
    _block_message(block, message.block)
    return message


def _block_message(block: dict, out) -> None:
    for name, spec in sorted(block["attributes"].items()):
        out.attributes.add(
            name=name,
            type=json.dumps(spec["type"]).encode(),
            required=spec.get("required", False),
            optional=spec.get("optional", False),
            computed=spec.get("computed", False),
            sensitive=spec.get("sensitive", False),
        )
    nesting = PB["Schema.NestedBlock"].NestingMode
    for name, nested in sorted(block["blocks"].items()):
        entry = out.block_types.add(
            type_name=name,
            nesting=nesting.Value(nested["nesting"]),
            min_items=nested.get("min_items", 0),
            max_items=nested.get("max_items", 0),
        )
        entry.block.SetInParent()  # an empty block (e.g. replication.auto) must still be sent
        _block_message(nested["block"], entry.block)


# -- what each type does beyond the generic -------------------------------------------------


def _digits(*parts: str, n: int = 12) -> str:
    return str(int(hashlib.sha256("/".join(parts).encode()).hexdigest(), 16))[:n]


def google_values(config: dict, kind: str, planned: dict):
    """The values Google gives a new resource, where infra/ reads them (None: the generic filler)."""
    project = planned.get("project") if isinstance(planned.get("project"), str) else config.get("project", "")
    region = config.get("region", "")
    name = planned.get("name") if isinstance(planned.get("name"), str) else ""
    number = _digits(project)

    def hook(path, kind_of_value):
        leaf = path[-1]
        if leaf == "project":
            return project
        if leaf in ("region", "location") and len(path) == 1:
            return region
        if kind == "google_project":
            return {"number": number, "name": project, "project_id": project, "id": f"projects/{project}"}.get(leaf)
        if kind == "google_service_account":
            email = f"{planned['account_id']}@{project}.iam.gserviceaccount.com"
            values = {"email": email, "member": f"serviceAccount:{email}", "unique_id": _digits(email, n=21)}
            values["name"] = values["id"] = f"projects/{project}/serviceAccounts/{email}"
            return values.get(leaf)
        if kind == "google_cloudfunctions2_function" and path[0] == "service_config":
            url = f"https://{name}-{number}.{region}.run.app"
            return {"uri": url, "service": f"projects/{project}/locations/{region}/services/{name}"}.get(leaf)
        if kind == "google_cloudfunctions2_function" and leaf == "url":
            return f"https://{region}-{project}.cloudfunctions.net/{name}"
        if kind == "google_sql_database_instance" and leaf == "connection_name":
            return f"{project}:{region}:{name}"
        if kind == "google_secret_manager_secret" and leaf in ("id", "name"):
            return f"projects/{number}/secrets/{planned['secret_id']}"
        if kind == "google_secret_manager_secret_version" and leaf in ("version", "name", "id"):
            return "1" if leaf == "version" else f"{planned['secret']}/versions/1"
        if kind == "google_storage_bucket_object" and leaf == "generation":
            return int(_digits(planned["bucket"], name, n=16))
        if kind == "google_cloud_scheduler_job" and leaf == "id":
            return f"projects/{project}/locations/{region}/jobs/{name}"
        if leaf == "id" and len(path) == 1:
            return f"{kind}/{_digits(json.dumps(planned, default=str, sort_keys=True), n=16)}"
        if kind_of_value == "string" and len(path) == 1 and leaf.endswith(("_time", "timestamp")):
            return "2026-01-01T00:00:00Z"
        return None

    return hook


def random_values(planned: dict):
    def hook(path, kind_of_value):
        leaf = path[-1]
        defaults = {"lower": True, "upper": True, "numeric": True, "number": True, "special": True}
        if leaf in defaults:
            return defaults[leaf]
        if leaf.startswith("min_"):
            return 0
        if leaf == "result":
            alphabet = ""
            for flag, chars in (("lower", string.ascii_lowercase), ("upper", string.ascii_uppercase)):
                alphabet += chars if planned.get(flag) is not False else ""
            alphabet += string.digits if planned.get("numeric") is not False else ""
            if planned.get("special") is not False:
                alphabet += planned.get("override_special") or "!@#$%&*()-_=+[]{}<>:?"
            return "".join(secrets.choice(alphabet) for _ in range(int(planned["length"])))
        if leaf == "bcrypt_hash":
            return "$2a$10$" + secrets.token_hex(26)
        if leaf == "id":
            return "none"
        return None

    return hook


def archive_file(config: dict) -> dict:
    """The real work of data.archive_file for a source_dir: a zip, and its hashes."""
    out = dict(config)
    source, target = Path(config["source_dir"]), Path(config["output_path"])
    if not source.is_dir():
        raise RefusedError(f"error archiving directory: could not archive missing directory: {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = int(config.get("output_file_mode") or "0644", 8)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(path.relative_to(source)), date_time=(2049, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    data = target.read_bytes()
    digests = {name: hashlib.new(name, data) for name in ("md5", "sha1", "sha256", "sha512")}
    out.update(
        id=digests["sha1"].hexdigest(),
        output_md5=digests["md5"].hexdigest(),
        output_sha=digests["sha1"].hexdigest(),
        output_sha256=digests["sha256"].hexdigest(),
        output_sha512=digests["sha512"].hexdigest(),
        output_base64sha256=base64.b64encode(digests["sha256"].digest()).decode(),
        output_base64sha512=base64.b64encode(digests["sha512"].digest()).decode(),
        output_size=len(data),
    )
    return out


class RefusedError(Exception):
    """What the real API (or provider) would answer with an error."""


# A project made in the console has Service Usage on; the rest waits for Cloud Resource Manager.
ON_BY_DEFAULT = ("serviceusage.googleapis.com",)
FOUNDATION = ("serviceusage.googleapis.com", "cloudresourcemanager.googleapis.com")
SERVICE_ACCOUNT_ID = re.compile(r"[a-z](?:[-a-z0-9]{4,28}[a-z0-9])")
USER_METRIC = re.compile(r'metric\.type="logging\.googleapis\.com/user/([^"]+)"')


def planted_failure(kind: str, state: dict) -> bool:
    """STANDIN_FAIL_CREATE=TYPE[=NAME][,...]: every create of TYPE fails, or only the one whose
    name (name, account_id or secret_id) is NAME."""
    for entry in filter(None, (e.strip() for e in os.environ.get("STANDIN_FAIL_CREATE", "").split(","))):
        wanted, _, name = entry.partition("=")
        names = {state.get(key) for key in ("name", "account_id", "secret_id")}
        if wanted == kind and (not name or name in names):
            return True
    return False


def refusals(kind: str, state: dict, cloud: dict) -> None:
    """Refuse a create the way Google does, and record what later refusals depend on."""
    if planted_failure(kind, state):
        raise RefusedError(f"Error creating {kind}: STANDIN_FAIL_CREATE asked this create to fail (a planted failure)")
    if kind == "google_service_account" and not SERVICE_ACCOUNT_ID.fullmatch(state["account_id"]):
        # The provider's own check (resource_google_service_account.go: ValidateRFC1035Name(6, 30)).
        raise RefusedError(
            f'"account_id" ("{state["account_id"]}") doesn\'t match regexp "^[a-z](?:[-a-z0-9]{{4,28}}[a-z0-9])$"'
        )
    services = cloud.setdefault("services", list(ON_BY_DEFAULT))
    if kind == "google_project_service":
        if state["service"] not in FOUNDATION and "cloudresourcemanager.googleapis.com" not in services:
            raise RefusedError(
                f"Error enabling service {state['service']}: googleapi: Error 403: Cloud Resource Manager API has "
                "not been used in project before or it is disabled. Enable it first."
            )
        services.append(state["service"])
    if kind == "google_project_iam_member" and "cloudresourcemanager.googleapis.com" not in services:
        raise RefusedError("Error retrieving IAM policy for project: Cloud Resource Manager API is disabled")
    if kind == "google_logging_metric":
        cloud["metrics"][state["name"]] = cloud["clock"]
    if kind == "google_monitoring_alert_policy":
        for condition in state.get("conditions") or []:
            for block in condition.values():
                for text in (b.get("filter") or "" for b in block or [] if isinstance(b, dict)):
                    for metric in USER_METRIC.findall(text):
                        created = cloud["metrics"].get(metric)
                        if created is None or cloud["clock"] - created < METRIC_DELAY_SECONDS:
                            raise RefusedError(
                                f"Error creating AlertPolicy: googleapi: Error 404: Cannot find metric(s) that match "
                                f'type = "logging.googleapis.com/user/{metric}". If a metric was created recently, '
                                "it could take up to 10 minutes to become available. Please try again soon."
                            )
    if kind == "time_sleep":
        cloud["clock"] += duration_seconds(state.get("create_duration") or "")


# -- the provider ---------------------------------------------------------------------------


class Provider:
    def __init__(self, name: str):
        self.name = name
        self.schema = load_schema(name)
        self.config: dict = {}

    def _block(self, kind: str, data: bool = False) -> dict:
        return self.schema["data" if data else "resources"][kind]

    def GetMetadata(self, request):
        response = PB["GetMetadata.Response"]()
        for kind in self.schema["resources"]:
            response.resources.add(type_name=kind)
        for kind in self.schema["data"]:
            response.data_sources.add(type_name=kind)
        return response

    def GetProviderSchema(self, request):
        response = PB["GetProviderSchema.Response"](provider=schema_message(self.schema["config"]))
        response.provider_meta.CopyFrom(schema_message({"attributes": {}, "blocks": {}}))
        for kind, block in self.schema["resources"].items():
            response.resource_schemas[kind].CopyFrom(schema_message(block))
        for kind, block in self.schema["data"].items():
            response.data_source_schemas[kind].CopyFrom(schema_message(block))
        return response

    def ConfigureProvider(self, request):
        self.config = {k: v for k, v in (value_of(request.config) or {}).items() if isinstance(v, str)}
        return PB["ConfigureProvider.Response"]()

    def UpgradeResourceState(self, request):
        state = json.loads(request.raw_state.json) if request.raw_state.json else None
        block = self._block(request.type_name)
        if state is not None:
            state = {name: state.get(name) for name in [*block["attributes"], *block["blocks"]]}
        return PB["UpgradeResourceState.Response"](upgraded_state=dynamic(state))

    def ReadResource(self, request):
        return PB["ReadResource.Response"](new_state=request.current_state, private=request.private)

    def PlanResourceChange(self, request):
        block = self._block(request.type_name)
        prior, proposed, config = (
            value_of(v) for v in (request.prior_state, request.proposed_new_state, request.config)
        )
        response = PB["PlanResourceChange.Response"](planned_private=request.prior_private)
        if proposed is None:
            response.planned_state.CopyFrom(dynamic(None))
            return response
        if prior is None:
            planned = mark_unknown(block, proposed, config)
        else:
            replace = force_new_changes(block, prior, config)
            planned = mark_unknown(block, proposed, config, everything=bool(replace))
            for path in replace:
                step = response.requires_replace.add()
                for name in path:
                    step.steps.add(attribute_name=name)
        response.planned_state.CopyFrom(dynamic(planned))
        return response

    def ApplyResourceChange(self, request):
        kind, block = request.type_name, self._block(request.type_name)
        prior, planned = value_of(request.prior_state), value_of(request.planned_state)
        response = PB["ApplyResourceChange.Response"](private=request.planned_private)
        if planned is None:
            response.new_state.CopyFrom(dynamic(None))
            return response
        hook = random_values(planned) if self.name == "random" else google_values(self.config, kind, planned)
        state = fill(block, planned, hook)
        if kind == "time_sleep":
            state["id"] = state.get("id") or "2026-01-01T00:00:00Z"
            if prior is None:
                # The wait takes (scaled) real time, so that what does not depend on it runs
                # meanwhile, before the simulated clock moves on: as a real sleep would.
                time.sleep(duration_seconds(state.get("create_duration") or "") * TIME_SCALE)
        try:
            with world() as cloud:
                if prior is None:
                    refusals(kind, state, cloud)
        except RefusedError as refused:
            response.diagnostics.append(error(str(refused)))
            response.new_state.CopyFrom(dynamic(prior))
            return response
        response.new_state.CopyFrom(dynamic(state))
        return response

    def ReadDataSource(self, request):
        kind, block = request.type_name, self._block(request.type_name, data=True)
        config = value_of(request.config)
        response = PB["ReadDataSource.Response"]()
        try:
            if kind == "archive_file":
                state = archive_file(config)
            else:
                state = fill(block, mark_unknown(block, config, config), google_values(self.config, kind, config))
        except RefusedError as refused:
            response.diagnostics.append(error(str(refused)))
            return response
        response.state.CopyFrom(dynamic(state))
        return response

    def ImportResourceState(self, request):
        response = PB["ImportResourceState.Response"]()
        response.diagnostics.append(error(f"the stand-in {self.name} provider does not import"))
        return response


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    serve(Provider(argv[0]))


if __name__ == "__main__":
    main()
