"""Check infra/*.tf against the providers' own schemas, offline.

Why this exists: the Google provider binary cannot be downloaded on the machines this project
is built on, so `terraform validate` cannot run, and a misspelt argument, a missing required
one or a block written as an argument would only show at the first `terraform plan` in a real
project. The CDK provider packages on PyPI are generated from each provider's schema and carry
it as a jsii assembly (`_jsii/*.jsii.tgz`, a JSON `.jsii` file): every resource's and data
source's arguments, nested blocks, which are required and which blocks may appear only once.
This module downloads the package that matches the provider's version constraint in
infra/versions.tf (with pip, once), keeps a compact copy of the schema under
.cache/provider-schema/, and checks every `resource` and `data` block against it.

    python -m local.tfschema            # checks infra/; exit status 1 and one line per problem
"""

from __future__ import annotations

import difflib
import functools
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import hcl2

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
CACHE = REPO / ".cache" / "provider-schema"


@dataclass(frozen=True)
class Package:
    """A CDK provider package on PyPI and the provider version it was generated from."""

    name: str
    version: str
    provider_version: str


# Newest first: the first one whose provider version meets infra/'s constraint is used.
PACKAGES: dict[str, tuple[Package, ...]] = {
    "hashicorp/google": (
        Package("cdktn-provider-google", "21.1.0", "8.7.0"),
        Package("cdktf-cdktf-provider-google", "16.12.1", "6.50.0"),
    ),
    "hashicorp/random": (Package("cdktn-provider-random", "15.0.1", "3.9.1"),),
    "hashicorp/archive": (Package("cdktn-provider-archive", "14.0.1", "2.8.1"),),
    "hashicorp/time": (Package("cdktn-provider-time", "14.0.2", "0.14.2"),),
}

# Terraform's own meta-arguments, allowed in every resource and data block.
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
META_BLOCKS = {"lifecycle", "provisioner", "connection"}

# The built-in provider (terraform.io/builtin/terraform) ships with Terraform itself.
BUILTIN = {
    "resource": {"terraform_data": "builtin.terraform_data"},
    "data": {},
    "structs": {
        "builtin.terraform_data": {
            "arguments": {"input": {"required": False}, "triggers_replace": {"required": False}},
            "blocks": {},
        }
    },
}


# -- version constraints ----------------------------------------------------------------


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def satisfies(version: str, constraint: str) -> bool:
    """Whether `version` meets a Terraform version constraint such as ">= 8.0, < 9.0"."""
    have = _version_tuple(version)
    for clause in filter(None, (part.strip() for part in constraint.split(","))):
        match = re.fullmatch(r"(>=|<=|!=|~>|>|<|=)?\s*v?([\d.]+)", clause)
        if not match:
            raise ValueError(f"cannot read the version constraint {clause!r}")
        operator, wanted_text = match.group(1) or "=", match.group(2)
        wanted = _version_tuple(wanted_text)
        padded = wanted + (0,) * (3 - len(wanted))
        if operator == "~>":
            # ~> 8.1 allows 8.x from 8.1; ~> 8.1.2 allows 8.1.x from 8.1.2.
            prefix = wanted[: max(1, len(wanted) - 1)]
            ok = have >= padded and have[: len(prefix)] == prefix
        else:
            ok = {
                "=": have == padded,
                "!=": have != padded,
                ">": have > padded,
                ">=": have >= padded,
                "<": have < padded,
                "<=": have <= padded,
            }[operator]
        if not ok:
            return False
    return True


def package_for(source: str, constraint: str) -> Package:
    """The newest known package whose provider version meets `constraint`."""
    for package in PACKAGES.get(source, ()):
        if satisfies(package.provider_version, constraint):
            return package
    known = ", ".join(f"{p.name} {p.version} ({source} {p.provider_version})" for p in PACKAGES.get(source, ()))
    raise LookupError(f"no known CDK package carries the schema of {source} {constraint!r} (known: {known or 'none'})")


# -- reading the jsii assembly ----------------------------------------------------------


def _attribute_name(prop: dict) -> str:
    """The Terraform name of a jsii property: the anchor of its registry link (`...#tier
    SqlDatabaseInstance#tier`), which is exact, or else its camelCase name in snake_case."""
    anchors = re.findall(r"#([A-Za-z0-9_]+)\}", prop.get("docs", {}).get("remarks", ""))
    if anchors:
        return anchors[-1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", prop["name"]).lower()


def _struct_of(type_ref: dict, types: dict) -> tuple[str, bool] | None:
    """(struct fqn, single) when a property is a nested block, None for a plain argument.

    A block that may appear once is typed as its struct; a repeatable one as
    `IResolvable | Struct[]`. Anything else (strings, numbers, maps, lists of strings) is an
    argument.
    """
    fqn = type_ref.get("fqn")
    if fqn and types.get(fqn, {}).get("datatype"):
        return fqn, True
    for member in type_ref.get("union", {}).get("types", []):
        collection = member.get("collection", {})
        element = collection.get("elementtype", {}).get("fqn")
        if collection.get("kind") == "array" and element and types.get(element, {}).get("datatype"):
            return element, False
    return None


def _collect_struct(fqn: str, types: dict, structs: dict) -> None:
    """Add a struct and every struct nested in it to `structs` (by fqn; some refer to
    themselves, so blocks name their struct instead of containing it)."""
    if fqn in structs:
        return
    entry: dict = {"arguments": {}, "blocks": {}}
    structs[fqn] = entry
    for prop in types[fqn].get("properties", []):
        name = _attribute_name(prop)
        required = not prop.get("optional", False)
        nested = _struct_of(prop["type"], types)
        if nested is None:
            entry["arguments"][name] = {"required": required}
            continue
        struct, single = nested
        entry["blocks"][name] = {"required": required, "single": single, "struct": struct}
        _collect_struct(struct, types, structs)


_LINK = re.compile(
    r"registry\.terraform\.io/providers/([\w-]+/[\w-]+)/([\d.]+)/docs/(resources|data-sources)/\w+ (\w+)\}"
)


def schema_from_assembly(assembly: dict) -> dict:
    """The compact schema of every resource and data source in a provider's jsii assembly.

    Each resource class's docs link to its registry page and name its Terraform type
    ("Represents a {@link https://registry.terraform.io/.../docs/resources/sql_user
    google_sql_user}"); the class's constructor takes its Config struct, whose properties
    are the arguments and blocks.
    """
    types = assembly["types"]
    found: dict = {"resource": {}, "data": {}, "structs": {}}
    source = version = None
    for spec in types.values():
        if spec.get("kind") != "class" or "initializer" not in spec:
            continue
        match = _LINK.search(spec.get("docs", {}).get("summary", ""))
        if not match:
            continue
        source, version, kind, type_name = match.groups()
        config = [p for p in spec["initializer"].get("parameters", []) if p["name"] == "config"]
        if not config:
            continue
        struct = config[0]["type"]["fqn"]
        _collect_struct(struct, types, found["structs"])
        found["data" if kind == "data-sources" else "resource"][type_name] = struct
    return {"source": source, "provider_version": version, **found}


def _read_assembly(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        member = next(name for name in archive.namelist() if name.endswith(".jsii.tgz"))
        packed = archive.read(member)
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
        handle = tar.extractfile("package/.jsii")
        if handle is None:
            raise RuntimeError(f"{wheel.name} has no package/.jsii")
        return json.load(handle)


def cache_path(package: Package) -> Path:
    return CACHE / f"{package.name}-{package.version}.json"


@functools.lru_cache(maxsize=8)
def load_schema(package: Package) -> dict:
    """The provider schema from the cache, downloading and extracting it on first use."""
    cached = cache_path(package)
    if cached.exists():
        return json.loads(cached.read_text())
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                scratch,
                f"{package.name}=={package.version}",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"could not download {package.name}=={package.version}: {done.stderr.strip()}")
        schema = schema_from_assembly(_read_assembly(next(Path(scratch).glob("*.whl"))))
    if schema["provider_version"] != package.provider_version:
        raise RuntimeError(
            f"{package.name} {package.version} carries provider {schema['provider_version']}, "
            f"not {package.provider_version} as local/tfschema.py says"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".tmp")
    partial.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))
    partial.replace(cached)
    return schema


# -- reading infra/ ---------------------------------------------------------------------


def _label(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _is_block(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


@functools.lru_cache(maxsize=256)
def _parse_text(text: str) -> dict:
    return hcl2.loads(text)


def parse(folder: Path) -> dict[str, dict]:
    """Every .tf file in `folder`, parsed by python-hcl2, by file name (cached by content:
    parsing takes a while, and tests check many copies that differ in one file)."""
    return {path.name: _parse_text(path.read_text()) for path in sorted(folder.glob("*.tf"))}


def required_providers(parsed: dict[str, dict]) -> dict[str, dict]:
    """Local provider name -> {"source", "version"} from the terraform blocks."""
    found = {}
    for tree in parsed.values():
        for terraform in tree.get("terraform", []):
            for entry in terraform.get("required_providers", []):
                for name, spec in entry.items():
                    if name.startswith("__") or not isinstance(spec, dict):
                        continue
                    found[name] = {key: _label(value) for key, value in spec.items() if isinstance(value, str)}
    return found


# -- checking ---------------------------------------------------------------------------


def _unknown(name: str, kind: str, candidates, where: str) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f'{where}: unknown {kind} "{name}"{hint}'


def check_body(body: dict, struct: str, structs: dict, where: str, top: bool = False) -> list[str]:
    """Every problem in one block's body (`struct` names its schema in `structs`): unknown
    names, a block written as an argument or the reverse, a block that may appear once
    repeated, a required argument or block missing."""
    problems = []
    arguments, blocks = structs[struct]["arguments"], structs[struct]["blocks"]
    present_blocks: dict[str, int] = {}
    for key, value in body.items():
        if key.startswith("__"):
            continue
        if top and (key in META_ARGUMENTS or key in META_BLOCKS):
            continue
        if key == "dynamic" and isinstance(value, list):
            for dynamic in value:
                for label, spec in dynamic.items():
                    if label.startswith("__"):
                        continue
                    name = _label(label)
                    if name not in blocks:
                        problems.append(_unknown(name, "block (in dynamic)", blocks, where))
                        continue
                    present_blocks[name] = present_blocks.get(name, 0) + 1
                    for content in spec.get("content", []):
                        problems += check_body(content, blocks[name]["struct"], structs, f"{where}.{name}")
            continue
        if key in arguments:
            if _is_block(value):
                problems.append(f'{where}: "{key}" is an argument, written as a block (write {key} = ...)')
        elif key in blocks:
            if not _is_block(value):
                problems.append(f'{where}: "{key}" is a block, written as an argument (write {key} {{ ... }})')
                continue
            present_blocks[key] = present_blocks.get(key, 0) + len(value)
            if blocks[key]["single"] and len(value) > 1:
                problems.append(f'{where}: block "{key}" may appear once, appears {len(value)} times')
            for occurrence in value:
                problems += check_body(occurrence, blocks[key]["struct"], structs, f"{where}.{key}")
        else:
            problems.append(_unknown(key, "argument or block", [*arguments, *blocks], where))
    for name, spec in arguments.items():
        if spec["required"] and name not in body:
            problems.append(f'{where}: required argument "{name}" is missing')
    for name, spec in blocks.items():
        if spec["required"] and not present_blocks.get(name):
            problems.append(f'{where}: required block "{name}" is missing')
    return problems


def schemas_for(parsed: dict[str, dict]) -> dict[str, dict]:
    """Local provider name -> its schema, for every provider infra/ requires."""
    found = {}
    for name, spec in required_providers(parsed).items():
        package = package_for(spec["source"], spec.get("version", ""))
        found[name] = load_schema(package)
    return found


def check(folder: Path = INFRA, schemas: dict[str, dict] | None = None) -> list[str]:
    """Every problem in the resource and data blocks of the .tf files in `folder`."""
    parsed = parse(folder)
    schemas = schemas_for(parsed) if schemas is None else schemas
    problems = []
    for file_name, tree in parsed.items():
        for kind in ("resource", "data"):
            for entry in tree.get(kind, []):
                for type_label, instances in entry.items():
                    if type_label.startswith("__"):
                        continue
                    type_name = _label(type_label)
                    for name_label, body in instances.items():
                        if name_label.startswith("__"):
                            continue
                        where = f"{file_name}: {kind} {type_name}.{_label(name_label)}"
                        problems += _check_one(kind, type_name, body, schemas, where)
    return problems


def _check_one(kind: str, type_name: str, body: dict, schemas: dict[str, dict], where: str) -> list[str]:
    if type_name in BUILTIN[kind]:
        return check_body(body, BUILTIN[kind][type_name], BUILTIN["structs"], where, top=True)
    provider = type_name.split("_", 1)[0]
    if provider not in schemas:
        return [f"{where}: no provider {provider!r} in required_providers"]
    known = schemas[provider][kind]
    if type_name not in known:
        return [_unknown(type_name, "resource type" if kind == "resource" else "data source", known, where)]
    return check_body(body, known[type_name], schemas[provider]["structs"], where, top=True)


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else INFRA
    problems = check(folder)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{folder}: every resource and data block matches its provider's schema")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
