"""Terraform's plugin protocol v6 for the stand-in providers: the go-plugin handshake, a gRPC
server over a Unix socket with a self-signed certificate, the tfplugin6 messages and cty values
in msgpack.

The tfplugin6 messages come from tfplugin6.desc, the protocol's serialized file descriptor as the
PyPI package `tf` 1.2.0 generated it (`python -m local.tfstandin.generate --protocol` extracts it
again). Loading the descriptor at run time, rather than generated *_pb2 modules, keeps the
stand-in working with whichever protobuf runtime the project's other libraries pin.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import sys
import tempfile
import threading
from concurrent import futures
from pathlib import Path

import grpc
import msgpack
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

HERE = Path(__file__).resolve().parent
# Set to 1 by attach.py: serve until stdin closes, for Terraform commands to reattach to (TF_REATTACH_PROVIDERS).
REATTACH = "STANDIN_REATTACH"
MAGIC_COOKIE = ("TF_PLUGIN_MAGIC_COOKIE", "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2")


def _messages() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    proto = descriptor_pb2.FileDescriptorProto.FromString((HERE / "tfplugin6.desc").read_bytes())
    pool.Add(proto)
    found = {}

    def visit(descriptor, prefix):
        name = f"{prefix}{descriptor.name}"
        found[name] = message_factory.GetMessageClass(descriptor)
        for nested in descriptor.nested_types:
            visit(nested, f"{name}.")

    for descriptor in pool.FindFileByName(proto.name).message_types_by_name.values():
        visit(descriptor, "")
    return found


PB = _messages()
METHODS = {
    "GetMetadata": "GetMetadata",
    "GetProviderSchema": "GetProviderSchema",
    "ValidateProviderConfig": "ValidateProviderConfig",
    "ValidateResourceConfig": "ValidateResourceConfig",
    "ValidateDataResourceConfig": "ValidateDataResourceConfig",
    "UpgradeResourceState": "UpgradeResourceState",
    "ConfigureProvider": "ConfigureProvider",
    "ReadResource": "ReadResource",
    "PlanResourceChange": "PlanResourceChange",
    "ApplyResourceChange": "ApplyResourceChange",
    "ImportResourceState": "ImportResourceState",
    "MoveResourceState": "MoveResourceState",
    "ReadDataSource": "ReadDataSource",
    "GetFunctions": "GetFunctions",
    "StopProvider": "StopProvider",
}


# -- cty values in msgpack ------------------------------------------------------------------


class _Unknown:
    """A value known only after apply (cty's unknown: msgpack extension 0, or 12 with refinements)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


def decode(raw: bytes):
    if not raw:
        return None

    def ext(code, data):
        if code in (0, 12):
            return UNKNOWN
        return msgpack.ExtType(code, data)

    return msgpack.unpackb(raw, ext_hook=ext, raw=False, strict_map_key=False)


def encode(value) -> bytes:
    def default(obj):
        if obj is UNKNOWN:
            return msgpack.ExtType(0, b"\x00")
        raise TypeError(f"cannot encode {obj!r}")

    return msgpack.packb(value, default=default, use_bin_type=False)


def dynamic(value) -> object:
    return PB["DynamicValue"](msgpack=encode(value))


def value_of(dynamic_value) -> object:
    if dynamic_value.msgpack:
        return decode(dynamic_value.msgpack)
    if dynamic_value.json:
        return json.loads(dynamic_value.json)
    return None


def error(summary: str, detail: str = "", path: list[str] | None = None):
    diagnostic = PB["Diagnostic"](severity=PB["Diagnostic"].ERROR, summary=summary, detail=detail)
    for step in path or []:
        diagnostic.attribute.steps.add(attribute_name=step)
    return diagnostic


# -- the server -----------------------------------------------------------------------------


def certificate() -> tuple[bytes, bytes, bytes]:
    """A fresh self-signed certificate: (key PEM, certificate PEM, certificate DER). The mirror makes
    one and every provider start reads it (STANDIN_TLS): cryptography is slow to import."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, True, False, True, True, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.DER)


def serve(provider) -> None:
    """Serve `provider` (an object with one method per tfplugin6 RPC) until Terraform stops it."""
    attached = os.environ.get(REATTACH) == "1"
    if not attached and os.environ.get(MAGIC_COOKIE[0]) != MAGIC_COOKIE[1]:
        sys.exit("This is a Terraform provider plugin (a stand-in for tests): Terraform starts it, not you.")
    stopped = threading.Event()
    handlers = {}
    for rpc, message in METHODS.items():
        request_class, response_class = PB[f"{message}.Request"], PB[f"{message}.Response"]
        method = getattr(provider, rpc, None)

        def call(request, context, method=method, response_class=response_class):
            if method is None:
                return response_class()
            return method(request)

        handlers[rpc] = grpc.unary_unary_rpc_method_handler(
            call, request_deserializer=request_class.FromString, response_serializer=response_class.SerializeToString
        )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("tfplugin6.Provider", handlers)])

    def shutdown(request, context):
        if not attached:  # an attached stand-in outlives each Terraform command; its starter ends it
            stopped.set()
        return b""

    raw = {"request_deserializer": None, "response_serializer": None}
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "plugin.GRPCController", {"Shutdown": grpc.unary_unary_rpc_method_handler(shutdown, **raw)}
            ),
            grpc.method_handlers_generic_handler(
                "plugin.GRPCStdio", {"StreamStdio": grpc.unary_stream_rpc_method_handler(lambda r, c: iter(()), **raw)}
            ),
        ]
    )
    with tempfile.TemporaryDirectory(prefix="tfstandin-") as tmp:
        socket_path = f"{tmp}/plugin.sock"
        if attached:
            # Terraform's reattach config carries no certificate: a reattached provider serves plain gRPC.
            server.add_insecure_port(f"unix://{socket_path}")
            server.start()
            print(f"1|6|unix|{socket_path}|grpc|", flush=True)
            sys.stdin.read()  # until its starter closes our stdin (or ends): then stop
        else:
            _serve_to_terraform(server, socket_path, stopped)
        server.stop(grace=0.2)


def _serve_to_terraform(server, socket_path: str, stopped: threading.Event) -> None:
    """go-plugin's handshake with TLS: Terraform started this process and stops it (Shutdown)."""
    tls = os.environ.get("STANDIN_TLS")
    if tls:
        key_pem, cert_pem, cert_der = (Path(tls, name).read_bytes() for name in ("key.pem", "cert.pem", "cert.der"))
    else:
        key_pem, cert_pem, cert_der = certificate()
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)], require_client_auth=False)
    server.add_secure_port(f"unix://{socket_path}", credentials)
    server.start()
    encoded = base64.b64encode(cert_der).decode().rstrip("=")
    print(f"1|6|unix|{socket_path}|grpc|{encoded}", flush=True)
    while not stopped.wait(0.05):
        pass
