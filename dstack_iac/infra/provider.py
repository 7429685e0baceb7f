"""The package's own Pulumi resource provider, `pulumi-resource-dstack-iac`: what a stack creates
on machines the package manages itself (a local node, a local volume, a run's lease on someone's
host) has a resource type of its own (`dstack-iac:local:Node`, ...) and a provider that is plain
code of the package, not code pickled into the state.

One process serves every resource of an engine call. It starts fast: only the generated protocol
modules are loaded, not the Pulumi SDK (whose import alone costs a third of a second), and each
handler imports only what it needs. The engine starts it in a session of its own, so a Ctrl+C
in the user's terminal never interrupts a create half-way; a cancellation lets it finish.

Handlers (`ResourceHandler`) are registered by type token; backends provide them.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import signal
import sys
import threading
import types
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROVIDER_NAME = "dstack-iac"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's marker for a value not known yet


class HandlerError(Exception):
    """A create or delete failed; the message reaches the user through the engine."""


@dataclass(frozen=True)
class ResourceHandler:
    """How one resource type is created and deleted. `create(inputs)` returns (id, outputs);
    a change to any of `replace_on` replaces the resource (there are no in-place updates)."""

    type_token: str
    create: Callable[[dict], tuple[str, dict]]
    delete: Callable[[str, dict], None]
    replace_on: tuple[str, ...] = ()
    check: Callable[[dict], list[tuple[str, str]]] | None = None


@dataclass
class _Protocol:
    provider_pb2: Any
    provider_grpc: Any
    plugin_pb2: Any
    struct_pb2: Any
    empty_pb2: Any
    json_format: Any = field(default=None)


def load_protocol() -> _Protocol:
    """The generated modules of the provider protocol, without importing the Pulumi SDK: they
    live inside its package, so that package is stood in for by a bare namespace here (this
    process never uses the SDK itself)."""
    spec = importlib.util.find_spec("pulumi")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pulumi package is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    if "pulumi" not in sys.modules:
        for name, path in (("pulumi", root), ("pulumi.runtime", root / "runtime"),
                           ("pulumi.runtime.proto", root / "runtime" / "proto")):
            module = types.ModuleType(name)
            module.__path__ = [str(path)]
            module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            sys.modules[name] = module
    from google.protobuf import empty_pb2, json_format, struct_pb2
    from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

    return _Protocol(provider_pb2, provider_pb2_grpc, plugin_pb2, struct_pb2, empty_pb2, json_format)


def _to_dict(protocol: _Protocol, struct) -> dict:
    return protocol.json_format.MessageToDict(struct, preserving_proto_field_name=True) if struct is not None else {}


def _to_struct(protocol: _Protocol, values: Mapping) -> Any:
    struct = protocol.struct_pb2.Struct()
    struct.update({key: value for key, value in values.items() if value is not None})
    return struct


HandlerSource = Callable[[str], Mapping[str, ResourceHandler]]  # a backend's name -> its handlers


def make_servicer(protocol: _Protocol, handlers_of: HandlerSource, version: str):
    pb = protocol.provider_pb2
    loaded: dict[str, ResourceHandler] = {}
    lock = threading.Lock()

    def handler_for(urn_or_type: str) -> ResourceHandler:
        token = urn_or_type.split("::")[-2].split("$")[-1] if "::" in urn_or_type else urn_or_type
        with lock:
            if token not in loaded:
                # dstack-iac:<backend>:<Type>: only the backend a resource belongs to is loaded.
                loaded.update(handlers_of(token.split(":")[1] if token.count(":") == 2 else ""))
            try:
                return loaded[token]
            except KeyError:
                raise HandlerError(f"{PROVIDER_NAME} has no resource type {token!r}") from None

    def failing(context, exc: BaseException):
        import grpc

        context.set_code(grpc.StatusCode.UNKNOWN)
        context.set_details(str(exc) or type(exc).__name__)

    class Servicer(protocol.provider_grpc.ResourceProviderServicer):
        def Handshake(self, request, context):  # noqa: N802 - the protocol's names
            return pb.ProviderHandshakeResponse(accept_secrets=False, accept_resources=False)

        def GetPluginInfo(self, request, context):  # noqa: N802
            return protocol.plugin_pb2.PluginInfo(version=version)

        def GetSchema(self, request, context):  # noqa: N802
            return pb.GetSchemaResponse(schema="{}")

        def CheckConfig(self, request, context):  # noqa: N802
            return pb.CheckResponse(inputs=request.news)

        def DiffConfig(self, request, context):  # noqa: N802
            return pb.DiffResponse(changes=pb.DiffResponse.DIFF_NONE)

        def Configure(self, request, context):  # noqa: N802
            return pb.ConfigureResponse(acceptSecrets=False, supportsPreview=False)

        def Check(self, request, context):  # noqa: N802
            handler = handler_for(request.urn)
            news = _to_dict(protocol, request.news)
            failures = [pb.CheckFailure(property=p, reason=r) for p, r in (handler.check(news) if handler.check else [])]
            return pb.CheckResponse(inputs=request.news, failures=failures)

        def Diff(self, request, context):  # noqa: N802
            handler = handler_for(request.urn)
            olds, news = _to_dict(protocol, request.old_inputs or request.olds), _to_dict(protocol, request.news)
            replaces = [key for key in handler.replace_on if olds.get(key) != news.get(key)]
            return pb.DiffResponse(changes=pb.DiffResponse.DIFF_SOME if replaces else pb.DiffResponse.DIFF_NONE,
                                   replaces=replaces, deleteBeforeReplace=True)

        def Create(self, request, context):  # noqa: N802
            handler = handler_for(request.urn)
            if request.preview:  # a preview creates nothing: the outputs stay unknown
                return pb.CreateResponse(properties=request.properties)
            try:
                resource_id, outputs = handler.create(_to_dict(protocol, request.properties))
            except Exception as exc:  # noqa: BLE001 - reported to the engine, which reports it
                failing(context, exc)
                return pb.CreateResponse()
            return pb.CreateResponse(id=resource_id, properties=_to_struct(protocol, outputs))

        def Read(self, request, context):  # noqa: N802
            return pb.ReadResponse(id=request.id, properties=request.properties, inputs=request.inputs)

        def Update(self, request, context):  # noqa: N802
            return pb.UpdateResponse(properties=request.news)

        def Delete(self, request, context):  # noqa: N802
            handler = handler_for(request.urn)
            try:
                handler.delete(request.id, _to_dict(protocol, request.properties))
            except Exception as exc:  # noqa: BLE001
                failing(context, exc)
            return protocol.empty_pb2.Empty()

        def Cancel(self, request, context):  # noqa: N802
            # What is in flight finishes (and is recorded); the engine starts nothing new.
            return protocol.empty_pb2.Empty()

    return Servicer()


def serve(handlers_of: HandlerSource, version: str) -> None:
    """Serve until the engine closes us: print the port, as the plugin protocol asks."""
    import grpc

    protocol = load_protocol()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                         options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)])
    protocol.provider_grpc.add_ResourceProviderServicer_to_server(make_servicer(protocol, handlers_of, version), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    # The engine ends its plugins with SIGINT (then SIGKILL after 5 s); if the engine itself
    # dies, its end of our stdin closes. Either way, what is in flight finishes first: a node
    # that was being started is then in the state, or stopped again by its handler.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    server.stop(grace=30).wait()
