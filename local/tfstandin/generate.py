"""Generate the stand-in providers' schemas (local/tfstandin/schemas/*.json) from the CDK provider
packages on PyPI, for only the resource and data types that infra/ uses.

Why from the CDK packages: they are generated from each provider's own schema at a pinned
provider version, and they ship on PyPI, the only registry these machines reach. Each resource's
`lib/<resource>/index.js` carries, for every attribute, the comment
`// name - computed: X, optional: Y, required: Z` followed by its typed getter, and for every
argument and nested block `synthesizeHclAttributes()` / `<struct>ToHclTerraform()` say whether it is
a block and its type (simple, list, set, map, struct) and storage class. A nested block held by an
`OutputReference` is a single one (MaxItems 1), one held by a `List` class is repeated. What the
packages do not carry (Sensitive, ForceNew, real MaxItems) comes from the provider's Go source
into facts.json beside the schemas.

    python -m local.tfstandin.generate [--work DIR]   # the schemas (DIR keeps the downloads)
    python -m local.tfstandin.generate --protocol     # tfplugin6.desc, from the `tf` 1.2.0 wheel
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
INFRA = HERE.parent.parent / "infra"

# provider -> (PyPI package, package version, provider version, prefix of its type names)
PACKAGES = {
    "google": ("cdktn-provider-google", "21.1.0", "8.7.0", "google_"),
    "random": ("cdktn-provider-random", "15.0.1", "3.9.1", "random_"),
    "archive": ("cdktn-provider-archive", "14.0.1", "2.8.1", "archive_"),
    "time": ("cdktn-provider-time", "14.0.2", "0.14.2", "time_"),
}

FIELD = re.compile(r"^    // (\w+) - computed: (true|false), optional: (true|false), required: (true|false)$", re.M)
GETTERS = {
    "getStringAttribute": "string",
    "getNumberAttribute": "number",
    "getBooleanAttribute": "bool",
    "getListAttribute": ["list", "string"],
    "getNumberListAttribute": ["list", "number"],
    "getStringMapAttribute": ["map", "string"],
    "getNumberMapAttribute": ["map", "number"],
    "getBooleanMapAttribute": ["map", "bool"],
}
MAP_CLASSES = {"StringMap": "string", "NumberMap": "number", "BooleanMap": "bool", "AnyMap": "dynamic"}
STORAGE = {
    "string": "string",
    "number": "number",
    "boolean": "bool",
    "stringList": ["list", "string"],
    "numberList": ["list", "number"],
    "stringMap": ["map", "string"],
    "numberMap": ["map", "number"],
    "booleanMap": ["map", "bool"],
}


def infra_types(infra: Path = INFRA) -> dict[str, set[tuple[str, str]]]:
    """provider -> {(kind, type)} for every resource and data block in infra/*.tf."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in infra.glob("*.tf"):
        for kind, name in re.findall(r'^(resource|data) "([a-z0-9_]+)"', path.read_text(), re.M):
            provider = name.split("_", 1)[0]
            if provider in PACKAGES:
                found.setdefault(provider, set()).add((kind, name))
    return found


def lib_folder(lib: Path, kind: str, name: str, prefix: str) -> Path:
    stem = name.removeprefix(prefix).replace("_", "-")
    stem = f"data-{name.replace('_', '-')}" if kind == "data" else stem
    stem = "provider" if kind == "provider" else stem
    for candidate in (stem, f"{stem}-resource"):
        if (lib / candidate / "index.js").is_file():
            return lib / candidate
    raise SystemExit(f"no lib/ folder for {kind} {name} (tried {stem})")


class Module:
    """One lib/<resource>/index.js, split into its classes and its HCL functions."""

    def __init__(self, source: str):
        self.classes: dict[str, str] = {}
        for match in re.finditer(r"^class (\w+) extends [\w.]+ \{$(.*?)^\}$", source, re.M | re.S):
            self.classes[match.group(1)] = match.group(2)
        self.hcl: dict[str, dict[str, dict]] = {}
        for match in re.finditer(r"^function (\w+)ToHclTerraform\(struct\) \{$(.*?)^\}$", source, re.M | re.S):
            self.hcl[match.group(1)] = self._synth(match.group(2))

    @staticmethod
    def _synth(body: str) -> dict[str, dict]:
        return {
            m.group(1): {"isBlock": m.group(2) == "true", "type": m.group(3), "storage": m.group(4)}
            for m in re.finditer(
                r"^\s+(\w+): \{\s+value: .*?,\s+isBlock: (true|false),\s+type: \"(\w+)\",\s+storageClassType: \"(\w+)\",",
                body,
                re.M | re.S,
            )
        }

    def block(self, cls: str, synth: dict[str, dict]) -> dict:
        body = self.classes[cls]
        attributes: dict[str, dict] = {}
        blocks: dict[str, dict] = {}
        fields = list(FIELD.finditer(body))
        for i, field in enumerate(fields):
            name, computed, optional, required = field.group(1), *(v == "true" for v in field.groups()[1:])
            after = body[field.end() : fields[i + 1].start() if i + 1 < len(fields) else len(body)]
            flags = {"required": required, "optional": optional, "computed": computed}
            nested = re.search(
                r"= new (?:[\w]+\.)?(\w+)\(this, \"\w+\"(?:, (true|false))?\)", after.split("\n    get ")[0]
            )
            hcl = synth.get(name)
            if nested is None:
                attributes[name] = {"type": self._primitive(name, after, hcl), **flags}
                continue
            holder, wraps_set = nested.group(1), nested.group(2)
            if holder in MAP_CLASSES:
                attributes[name] = {"type": ["map", MAP_CLASSES[holder]], **flags}
                continue
            element = self._element(holder)
            inner = self.block(
                element, self.hcl.get(element[0].lower() + element[1:].removesuffix("OutputReference"), {})
            )
            if hcl is None or not hcl["isBlock"]:
                # Computed only (or an attribute of object type): an attribute, not a block.
                collection = "set" if wraps_set == "true" else "list"
                attributes[name] = {"type": [collection, self.object_type(inner)], **flags}
                continue
            nesting = {"list": "LIST", "set": "SET", "map": "MAP", "struct": "SINGLE"}[hcl["type"]]
            single = holder.endswith("OutputReference")
            blocks[name] = {
                "nesting": nesting,
                "min_items": 1 if required and nesting in ("LIST", "SET") else 0,
                "max_items": 1 if single and nesting in ("LIST", "SET") else 0,
                "block": inner,
            }
        return {"attributes": attributes, "blocks": blocks}

    def _element(self, holder: str) -> str:
        if holder.endswith("OutputReference"):
            return holder
        got = re.search(r"get\(index\) \{\s+return new (\w+)\(", self.classes[holder])
        if got is None:
            raise SystemExit(f"no element class in {holder}")
        return got.group(1)

    @staticmethod
    def _primitive(name: str, after: str, hcl: dict | None):
        if hcl is not None and hcl["storage"] in STORAGE and hcl["type"] in ("simple", "list", "set", "map"):
            kind = STORAGE[hcl["storage"]]
            if hcl["type"] == "set" and isinstance(kind, list):
                return ["set", kind[1]]
            return kind
        got = re.search(r"(cdktn\.Fn\.tolist\()?this\.(\w+)\('" + name + r"'\)", after)
        if got is None or got.group(2) not in GETTERS:
            return "dynamic"
        kind = GETTERS[got.group(2)]
        return ["set", kind[1]] if got.group(1) and isinstance(kind, list) else kind

    @staticmethod
    def object_type(block: dict) -> list:
        fields = {name: spec["type"] for name, spec in block["attributes"].items()}
        for name, nested in block["blocks"].items():
            collection = {"LIST": "list", "SET": "set", "MAP": "map"}.get(nested["nesting"])
            inner = Module.object_type(nested["block"])
            fields[name] = [collection, inner] if collection else inner
        return ["object", fields]


def top_class(module: Module) -> str:
    for name, body in module.classes.items():
        if "synthesizeHclAttributes()" in body and "static tfResourceType" in body:
            return name
    raise SystemExit("no resource class")


def schema_of(lib: Path, kind: str, name: str, prefix: str) -> dict:
    module = Module((lib_folder(lib, kind, name, prefix) / "index.js").read_text())
    cls = top_class(module)
    synth = Module._synth(module.classes[cls].split("synthesizeHclAttributes()")[1])
    return module.block(cls, synth)


def unpack(package: str, version: str, into: Path) -> Path:
    """pip download the wheel (no dependencies) and unpack its jsii tarball: the lib/ folder."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), f"{package}=={version}"],
        check=True,
    )
    wheel = next(into.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=archive.open(member)) as tgz:
            tgz.extractall(into / package, filter="data")
    return into / package / "package" / "lib"


def generate(out: Path = SCHEMAS, infra: Path = INFRA, work: Path | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = work or Path(tmp)
        for provider, types in sorted(infra_types(infra).items()):
            package, version, provider_version, prefix = PACKAGES[provider]
            lib = base / package / "package" / "lib"
            if not lib.is_dir():
                lib = unpack(package, version, base)
            schema = {"provider": provider, "version": provider_version, "source": f"{package}=={version}"}
            schema["config"] = schema_of(lib, "provider", provider, prefix)
            schema["config"]["attributes"].pop("alias", None)  # Terraform's meta-argument, not the provider's
            schema["resources"] = {n: schema_of(lib, k, n, prefix) for k, n in sorted(types) if k == "resource"}
            schema["data"] = {n: schema_of(lib, k, n, prefix) for k, n in sorted(types) if k == "data"}
            (out / f"{provider}.json").write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            print(f"{provider} {provider_version}: {len(schema['resources'])} resources, {len(schema['data'])} data")


def extract_protocol(work: Path) -> None:
    """tfplugin6.desc: the serialized descriptor of Terraform's plugin protocol v6, as the PyPI
    package `tf` 1.2.0 generated it (its tf/gen/tfplugin_pb2.py holds it as one bytes literal).
    Not imported: that module pins protobuf < 6, the project has 7."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(work), "tf==1.2.0"], check=True
    )
    with zipfile.ZipFile(next(work.glob("tf-1.2.0-*.whl"))) as wheel:
        tree = ast.parse(wheel.read("tf/gen/tfplugin_pb2.py"))
    literal = max(
        (node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, bytes)),
        key=len,
    )
    (HERE / "tfplugin6.desc").write_bytes(literal)
    print(f"tfplugin6.desc: {len(literal)} bytes")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="a folder to keep the downloaded packages in (reused when present)")
    parser.add_argument("--infra", type=Path, default=INFRA)
    parser.add_argument("--protocol", action="store_true", help="extract tfplugin6.desc instead")
    args = parser.parse_args(argv)
    if args.protocol:
        with tempfile.TemporaryDirectory() as tmp:
            extract_protocol(args.work or Path(tmp))
        return
    generate(infra=args.infra, work=args.work)


if __name__ == "__main__":
    main()
