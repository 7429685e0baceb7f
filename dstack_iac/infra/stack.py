"""Stacks of the `dstack-iac` project: one ephemeral stack per run (named after it), one
long-lived stack per volume (`volume-<name>`) or fleet.

`ManagedStack` drives the engine directly (see infra/engine.py): a program given to `up` or
`preview` runs in this process, served to the engine by an in-process language server, and the
engine's events arrive over gRPC as they happen. What the program declares is known to the
caller from the program itself, so `up` needs no `stack output` afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

from dstack_iac.errors import DstackIacError, EnvironmentProblem
from dstack_iac.infra.engine import PROJECT_NAME, Engine, EngineError, file_backend_dir, get_engine

GRPC_OPTIONS = [("grpc.max_receive_message_length", 400 * 1024 * 1024),
                ("grpc.max_send_message_length", 400 * 1024 * 1024)]
OnEvent = Callable[[object], None]


SECRETS_PROVIDER_ENV = "DSTACK_IAC_SECRETS_PROVIDER"  # e.g. awskms://alias/team?region=eu-west-1


def require_shared_secrets() -> None:
    """A backend the team shares holds stacks everyone must be able to destroy: their secrets
    cannot be encrypted with a passphrase only this state dir knows (the one made by default).
    A file:// backend works as it always did (a directory shared by several users is their
    business: docs/teams.md says to give them one PULUMI_CONFIG_PASSPHRASE_FILE)."""
    url = os.environ.get("PULUMI_BACKEND_URL", "")
    if not url or url.startswith(("https://", "http://", "file://")):  # Pulumi Cloud's secrets; a directory
        return
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return
    raise EnvironmentProblem(
        f"the backend {url.split('?')[0]} is shared, but stacks' secrets would be encrypted with this state dir's "
        "own passphrase, which nobody else has (so nobody else could stop your runs)",
        hint=f"set the team's {SECRETS_PROVIDER_ENV} (awskms://..., gcpkms://..., azurekeyvault://...) or its "
             "PULUMI_CONFIG_PASSPHRASE_FILE (docs/teams.md)")


class ProgramFailed(DstackIacError):
    """The run's Pulumi program raised: a bug or a bad input, never worth a retry."""


@dataclass
class _Servers:
    """The gRPC servers one engine command talks back to: the program's and the events'."""

    program_server: object | None
    events_server: object | None
    args: list[str]

    def stop(self) -> None:
        for server in (self.program_server, self.events_server):
            if server is not None:
                server.stop(0)


class _ProgramGuard:
    """Runs the program and keeps what it raised, so the caller gets the exception itself
    rather than the engine's rendering of it."""

    def __init__(self, program: Callable[[], None]):
        self.program = program
        self.error: BaseException | None = None

    def __call__(self) -> None:
        try:
            self.program()
        except BaseException as exc:
            self.error = exc
            raise


def _serve(program: _ProgramGuard | None, on_event: OnEvent | None) -> _Servers:
    import grpc

    args: list[str] = []
    program_server = events_server = None
    if program is not None:
        from pulumi.automation._server import LanguageServer
        from pulumi.runtime.proto import language_pb2_grpc

        program_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=GRPC_OPTIONS)
        language_pb2_grpc.add_LanguageRuntimeServicer_to_server(LanguageServer(program), program_server)
        port = program_server.add_insecure_port("127.0.0.1:0")
        program_server.start()
        args += [f"--client=127.0.0.1:{port}", "--exec-kind", "auto.inline"]
    if on_event is not None:
        events_server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), options=GRPC_OPTIONS)
        _add_events_servicer(events_server, on_event)
        port = events_server.add_insecure_port("127.0.0.1:0")
        events_server.start()
        args += ["--event-log", f"tcp://127.0.0.1:{port}"]
    return _Servers(program_server, events_server, args)


def _add_events_servicer(server, on_event: OnEvent) -> None:
    from google.protobuf import empty_pb2
    from pulumi.automation.events import EngineEvent
    from pulumi.runtime.proto import events_pb2_grpc

    class EventsServicer(events_pb2_grpc.EventsServicer):
        def StreamEvents(self, request_iterator, context):  # noqa: N802 - the protocol's name
            for request in request_iterator:
                try:
                    event = EngineEvent.from_json(json.loads(request.event))
                except (ValueError, KeyError, TypeError):
                    continue  # an event kind this SDK does not know: nothing we act on
                on_event(event)
            return empty_pb2.Empty()

    events_pb2_grpc.add_EventsServicer_to_server(EventsServicer(), server)


class ManagedStack:
    """One stack of the project in the configured backend."""

    def __init__(self, name: str, engine: Engine | None = None):
        self.name = name
        self.engine = engine or get_engine()

    # --- lifecycle ---------------------------------------------------------------------------

    def create(self) -> None:
        """A new, empty stack (one engine call; fails if it exists), its secrets encrypted by the
        team's provider when one is set."""
        provider = os.environ.get(SECRETS_PROVIDER_ENV, "").strip()
        if not provider:
            require_shared_secrets()
        self.engine.run(["stack", "init", self.name, "--no-select",
                         *(["--secrets-provider", provider] if provider else [])])

    def up(self, program: Callable[[], None], on_event: OnEvent | None = None,
           extra_args: Sequence[str] = ()) -> None:
        self._update("up", program, on_event, extra_args)

    def preview(self, program: Callable[[], None], on_event: OnEvent | None = None,
                extra_args: Sequence[str] = ()) -> None:
        """`extra_args`: e.g. the policy packs' `--policy-pack DIR` (infra/policy.py)."""
        self._update("preview", program, on_event, extra_args)

    def _update(self, verb: str, program: Callable[[], None], on_event: OnEvent | None,
                extra_args: Sequence[str] = ()) -> None:
        guard = _ProgramGuard(program)
        servers = _serve(guard, on_event)
        args = [verb, "--stack", self.name, "--skip-preview", "--yes", *servers.args] if verb == "up" \
            else [verb, "--stack", self.name, *servers.args]
        args += list(extra_args)
        try:
            self.engine.run(args)
        except EngineError:
            if guard.error is not None and not isinstance(guard.error, (KeyboardInterrupt, SystemExit)):
                error = guard.error
                if isinstance(error, DstackIacError):
                    raise error from None
                raise ProgramFailed(f"the run's Pulumi program failed: {type(error).__name__}: {error}") from error
            raise
        finally:
            servers.stop()

    def destroy(self, on_event: OnEvent | None = None, *, remove: bool = True) -> None:
        """Destroy every resource (the providers are in the state: no program is needed) and,
        with `remove`, the stack itself, in one engine call."""
        servers = _serve(None, on_event)
        args = ["destroy", "--stack", self.name, "--skip-preview", "--yes", *servers.args]
        if remove:
            args.append("--remove")
        try:
            try:
                self.engine.run(args)
            except EngineError as exc:
                if "failed to load checkpoint" not in str(exc) or not self.recover_checkpoint():
                    raise
                self.engine.run(args)
        finally:
            servers.stop()
        if remove:
            self._forget_backups()

    def recover_checkpoint(self) -> bool:
        """A file-backend checkpoint that a full disk cut short (empty, or not JSON) is replaced
        by the previous one the backend kept beside it (`.json.bak`), so the stack can still be
        destroyed. True when it was."""
        directory = file_backend_dir()
        if directory is None:
            return False
        recovered = False
        for checkpoint in directory.glob(f".pulumi/stacks/*/{self.name}.json"):
            backup = checkpoint.with_name(checkpoint.name + ".bak")
            if _is_json(checkpoint) or not _is_json(backup):
                continue
            tmp = checkpoint.with_name(checkpoint.name + ".recovered")
            tmp.write_bytes(backup.read_bytes())
            os.replace(tmp, checkpoint)
            Path(f"{checkpoint}.attrs").unlink(missing_ok=True)  # its checksum is the cut-short file's
            recovered = True
        return recovered

    def remove(self, force: bool = False) -> None:
        self.engine.run(["stack", "rm", self.name, "--yes", *(["--force"] if force else [])])
        self._forget_backups()

    # --- tags --------------------------------------------------------------------------------

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Stack tags (`pulumi stack ls --tag NAME=VALUE` finds them), one engine call each."""
        for key, value in tags.items():
            self.engine.run(["stack", "tag", "set", key, value, "--stack", self.name])

    def tags(self) -> dict[str, str]:
        result = self.engine.run(["stack", "tag", "ls", "--json", "--stack", self.name])
        return json.loads(result.stdout or "{}")

    # --- recovery ----------------------------------------------------------------------------

    def release_abandoned_locks(self, wait_seconds: float = 120.0) -> list[int]:
        """Locks of a file-backend stack whose holder died (e.g. an update cut short) block every
        later command. Wait for live holders on this host, then delete the locks of dead ones, and
        locks a full disk left empty. Returns the pids whose locks were released."""
        from dstack_iac.state.processes import alive

        directory = file_backend_dir()
        if directory is None:
            return []
        hostname, deadline, released = socket.gethostname(), time.monotonic() + wait_seconds, []
        for lock in (directory / ".pulumi" / "locks").glob(f"*/{PROJECT_NAME}/{self.name}/*.json*"):
            if lock.name.endswith(".attrs"):
                continue
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                # Unreadable: a write that a full disk cut short. Nobody holds it.
                _unlink_lock(lock)
                released.append(0)
                continue
            if holder.get("hostname") != hostname:
                continue  # another machine's lock: not ours to judge
            pid = int(holder.get("pid", 0))
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            if not alive(pid):
                _unlink_lock(lock)
                released.append(pid)
        return released

    def _forget_backups(self) -> None:
        """The file backend may keep `<stack>.json.bak` after removal: stale state of a gone stack."""
        directory = file_backend_dir()
        if directory is not None:
            for leftover in directory.glob(f".pulumi/stacks/*/{self.name}.json.bak*"):
                leftover.unlink(missing_ok=True)


def _is_json(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return True


def _unlink_lock(lock: Path) -> None:
    lock.unlink(missing_ok=True)
    Path(f"{lock}.attrs").unlink(missing_ok=True)


@dataclass(frozen=True)
class StackSummary:
    name: str
    resource_count: int | None
    update_in_progress: bool


def list_stacks(engine: Engine | None = None) -> list[StackSummary]:
    """The project's stacks in the backend (one engine call)."""
    engine = engine or get_engine()
    result = engine.run(["stack", "ls", "--json", "--project", PROJECT_NAME])
    return [StackSummary(name=s["name"].rsplit("/", 1)[-1], resource_count=s.get("resourceCount"),
                         update_in_progress=bool(s.get("updateInProgress"))) for s in json.loads(result.stdout or "[]")]


def stack_exists(name: str) -> bool:
    return any(summary.name == name for summary in list_stacks())
