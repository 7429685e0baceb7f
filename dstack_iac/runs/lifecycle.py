"""A run from plan to teardown: stack up, connect, upload, execute on every node, destroy.

Teardown always happens: after success, failure, an exception, SIGTERM and Ctrl+C. When it
cannot finish, the user is told the exact command that does.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import subprocess
import threading
import time
import warnings
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paramiko

from dstack_iac.config.models import RetryEvent
from dstack_iac.execution.nodes import NodeLost, NodeSession, write_known_hosts
from dstack_iac.execution.script import node_environment, render_container_script, render_script
from dstack_iac.execution.workdir import pack_working_dir
from dstack_iac.infra.local import processes
from dstack_iac.infra.program import StackOutputs, run_program
from dstack_iac.infra.stack import RunStack
from dstack_iac.paths import cache_dir, wheelhouse_dir
from dstack_iac.runs import registry
from dstack_iac.runs.plan import RunPlan
from dstack_iac.runs.registry import RunRecord, RunStatus

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_TIMEOUT = 124
RETRY_PAUSE = 2.0


class RunNameTaken(Exception):
    exit_code = 2


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt is for SIGINT."""


@dataclass
class RunUI:
    say: Callable[[str], None] = print
    warn: Callable[[str], None] = print
    line: Callable[[str], None] = print
    resource: Callable[[str], None] = print


@dataclass
class RunResult:
    exit_code: int
    status: RunStatus
    phases: dict[str, float] = field(default_factory=dict)


def stop_command(run_name: str) -> str:
    return f"dstack-iac stop {run_name}"


def _generate_key(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"dstack-iac-{path.parent.name}",
                    "-f", str(path)], check=True, capture_output=True)
    path.chmod(0o600)
    return path.with_suffix(".pub").read_text().strip()


def _generate_host_key(path: Path):
    """A cloud node's host key, made by the run so the client can pin it from the start."""
    from pydantic import SecretStr

    from dstack_iac.infra.cloud.spec import NodeHostKey

    public = _generate_key(path)
    key = NodeHostKey(public=" ".join(public.split()[:2]), private=SecretStr(path.read_text()))
    path.unlink()
    path.with_suffix(".pub").unlink(missing_ok=True)
    return key


def _stack_event_reporter(ui: RunUI) -> Callable:
    started: dict[str, float] = {}

    def on_event(event) -> None:
        if event.resource_pre_event:
            started[event.resource_pre_event.metadata.urn] = event.timestamp
        elif event.res_outputs_event:
            meta = event.res_outputs_event.metadata
            if meta.type.startswith("pulumi:"):
                return
            took = event.timestamp - started.get(meta.urn, event.timestamp)
            verb = {"create": "created", "delete": "deleted", "same": "kept"}.get(str(meta.op.value), str(meta.op.value))
            ui.resource(f"{verb} {meta.urn.rsplit('::', 1)[1]} in {took}s")

    return on_event


class RunLog:
    """Output of all nodes, live to the terminal and saved to the run's log file."""

    def __init__(self, path: Path, ui: RunUI):
        self._file = open(path, "a", buffering=1)
        self._lock = threading.Lock()
        self._ui = ui

    def emit(self, text: str) -> None:
        with self._lock:
            self._file.write(text + "\n")
            self._ui.line(text)

    def close(self) -> None:
        self._file.close()


def execute_run(plan: RunPlan, ui: RunUI, archive: bytes | None = None) -> RunResult:
    archive = pack_working_dir(plan.repo_dir) if archive is None else archive
    record = RunRecord(
        name=plan.run_name, status=RunStatus.PROVISIONING, backend=plan.backend, nodes=plan.nodes,
        configuration=plan.configuration_path, owner_pid=os.getpid(), owner=getpass.getuser(), created_at=time.time(),
        volumes=plan.volume_names,
    )
    if not registry.claim(record):
        raise RunNameTaken(f"a run named {plan.run_name!r} is already active: choose another name, or stop it with "
                           f"`{stop_command(plan.run_name)}`")
    phases: dict[str, float] = {}
    sessions: list[NodeSession] = []
    stack: RunStack | None = None
    status, exit_code, message = RunStatus.FAILED, 1, ""
    log = RunLog(record.log_path, ui)
    previous_term = None
    interrupts, gave_up = _Interrupts(plan.run_name, ui), False
    if _in_main_thread():
        previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
        # Ctrl+C must reach the teardown even when the shell started us with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        public_key = _generate_key(record.directory / "id_ed25519")
        host_keys = ssh_cidr = None
        if plan.backend != "local":
            from dstack_iac.infra.cloud.credentials import require_credentials
            from dstack_iac.infra.cloud.network import caller_ssh_cidr

            require_credentials(plan.backend)
            ssh_cidr = caller_ssh_cidr()
            host_keys = [_generate_host_key(record.directory / f"host_key_{rank}") for rank in range(plan.nodes)]
        stack = RunStack(plan.run_name, run_program(plan, public_key, getpass.getuser(), host_keys, ssh_cidr))
        stack.set_tags({"run": plan.run_name, "configuration": plan.configuration_path, "backend": plan.backend,
                        "owner": record.owner})
        retry = plan.configuration.retry
        give_up_at = time.monotonic() + retry.duration if retry else 0.0
        attempt = 1
        while True:
            outcome = _attempt(plan, stack, archive, record, log, ui, phases, sessions, interrupts)
            if outcome.event is None or not retry or outcome.event not in retry.on_events \
                    or time.monotonic() >= give_up_at:
                break
            attempt += 1
            ui.warn(f"{outcome.reason}: retrying (attempt {attempt}, on {outcome.event.value}; "
                    f"retry gives up {_seconds_from_now(give_up_at)})")
            _close_sessions(sessions)
            stack.destroy(on_event=_stack_event_reporter(ui))
            time.sleep(RETRY_PAUSE)
        if outcome.error is not None:
            raise outcome.error
        exit_code = outcome.exit_code
        status = RunStatus.DONE if exit_code == 0 else RunStatus.FAILED
    except (KeyboardInterrupt, _GaveUp) as exc:
        exit_code, status, message = EXIT_INTERRUPTED, RunStatus.STOPPED, "interrupted"
        gave_up = interrupts.caught(exc)
    except _Terminated as exc:
        exit_code, status, message = EXIT_TERMINATED, RunStatus.STOPPED, "terminated"
        interrupts.caught(exc, "Terminated")
    except Exception as exc:  # noqa: BLE001 - every failure must reach the teardown below
        exit_code, status, message = 1, RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
        ui.warn(f"Run failed: {_short(exc)}")
    finally:
        log.close()
        interrupts.arm()
        torn_down = False
        try:
            if gave_up:
                raise _GaveUp()
            if status == RunStatus.STOPPED:
                _parallel([s.stop for s in sessions], swallow=True)
            _close_sessions(sessions)
            record = registry.finish(record.model_copy(update={"status": RunStatus.TERMINATING}),
                                     RunStatus.TERMINATING, None)
            started = time.perf_counter()
            torn_down = _teardown(stack, plan.run_name, ui)
            phases["destroy"] = time.perf_counter() - started
        except (_GaveUp, KeyboardInterrupt):
            interrupts.give_up()
            _close_sessions(sessions)  # lets the node threads return, so we can exit
            _abandon_engine()
            ui.warn(f"Teardown of {plan.run_name} did not finish (interrupted). "
                    f"Clean up with: {stop_command(plan.run_name)}")
            exit_code = EXIT_INTERRUPTED
        finally:
            interrupts.disarm()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        if torn_down:
            for leftover in ("id_ed25519", "id_ed25519.pub", "known_hosts"):
                (record.directory / leftover).unlink(missing_ok=True)
            registry.finish(record, status, exit_code, message)
        else:
            exit_code = exit_code or 1
    return RunResult(exit_code=exit_code, status=status, phases=phases)


@dataclass
class _Outcome:
    """How one attempt ended: an exit code, and for a failure the retry event it counts as."""

    exit_code: int
    event: RetryEvent | None = None
    reason: str = ""
    error: Exception | None = None


def _attempt(plan: RunPlan, stack: RunStack, archive: bytes, record: RunRecord, log: RunLog, ui: RunUI,
             phases: dict[str, float], sessions: list[NodeSession], interrupts: "_Interrupts") -> _Outcome:
    """Provision the stack, connect, upload and run the commands once. `sessions` is filled in
    place so the caller can stop and close them whatever happens."""
    started = time.perf_counter()
    ui.say(f"Provisioning {plan.nodes} node{'s' if plan.nodes > 1 else ''} ({plan.backend})...")
    try:
        outputs = stack.up(on_event=_stack_event_reporter(ui))
    except Exception as exc:  # noqa: BLE001 - classified for retry, re-raised by the caller
        return _Outcome(1, RetryEvent.NO_CAPACITY, f"Provisioning failed ({_short(exc)})", exc)
    phases["stack_up"] = time.perf_counter() - started

    started = time.perf_counter()
    try:
        sessions[:] = _connect_all(outputs, record.directory)
        _parallel([lambda s=s: s.upload(archive) for s in sessions])
    except Exception as exc:  # noqa: BLE001
        return _Outcome(1, RetryEvent.INTERRUPTION, f"Nodes unreachable ({_short(exc)})", exc)
    phases["connect"] = time.perf_counter() - started
    registry.save(record.model_copy(update={"status": RunStatus.RUNNING}))

    started = time.perf_counter()
    try:
        with _forward_ports(plan, sessions[0], ui):
            exit_code = _run_commands(plan, outputs, sessions, log, ui, interrupts)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        return _Outcome(1, RetryEvent.INTERRUPTION, f"Lost a node ({_short(exc)})", exc)
    phases["commands"] = time.perf_counter() - started
    if exit_code in (0, EXIT_TIMEOUT):  # a run past max_duration is not retried
        return _Outcome(exit_code)
    return _Outcome(exit_code, RetryEvent.ERROR, f"The commands failed with exit code {exit_code}")


def _seconds_from_now(moment: float) -> str:
    return f"in {max(0, round(moment - time.monotonic()))}s"


def _close_sessions(sessions: list[NodeSession]) -> None:
    for session in sessions:
        with contextlib.suppress(Exception):
            session.close()
    sessions.clear()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(_signum, _frame):
    raise _Terminated()


def _short(exc: Exception) -> str:
    text = str(exc).strip()
    if "error:" in text:  # Pulumi's CommandError: keep the engine's own error lines
        text = "\n".join(line for line in text.splitlines() if "error" in line.lower())[:2000]
    return text or type(exc).__name__


def _teardown(stack: RunStack | None, run_name: str, ui: RunUI) -> bool:
    """Destroy and remove the stack; False (with the command that finishes the job) when it fails."""
    if stack is None:
        return True
    ui.say(f"Tearing down {run_name}...")
    try:
        stack.destroy_and_remove(on_event=_stack_event_reporter(ui))
    except Exception as exc:  # noqa: BLE001 - reported with the way out
        ui.warn(f"Teardown of {run_name} did not finish ({_short(exc)}). Clean up with: {stop_command(run_name)}")
        return False
    ui.say(f"Torn down: nothing of {run_name} is left running.")
    return True


def _abandon_engine() -> None:
    """Stop the Pulumi update we stopped waiting for (the CLI and its plugins, our own child
    processes, by pid), so that it does not go on half-done after we exit; `dstack-iac stop`
    then takes over and releases the lock it leaves. Its event-reading thread fails as the
    pipe closes: that noise is for nobody."""
    warnings.filterwarnings("ignore", category=UserWarning, module="pulumi")
    threading.excepthook = lambda args: None
    processes.terminate(processes.descendants(os.getpid()))


class _GaveUp(BaseException):
    """The user's second Ctrl+C: stop waiting for the cleanup."""


class _Interrupts:
    """Ctrl+C during a run: the first stops the commands and tears down (announced at once); while
    that cleanup runs, another one gives up waiting, and the caller prints the command that
    finishes the job. A first Ctrl+C during a normal teardown is only acknowledged."""

    def __init__(self, run_name: str, ui: RunUI):
        self.run_name, self.ui, self.count = run_name, ui, 0
        self._previous = None
        self._first: BaseException | None = None

    def caught(self, exc: BaseException, verb: str = "Interrupted") -> bool:
        """The run phase caught `exc` (Ctrl+C or SIGTERM): arm, then announce once. True when
        this is a further Ctrl+C that slipped in before arming: the user gives up waiting."""
        self.arm()
        if isinstance(exc, _GaveUp):
            return True
        if self._first is None:
            self._first, self.count = exc, 1
            self.ui.warn(f"{verb}: stopping the commands and tearing down "
                         f"(press Ctrl+C again to stop waiting, then run `{stop_command(self.run_name)}`)...")
            return False
        return exc is not self._first and isinstance(exc, KeyboardInterrupt)

    def arm(self) -> None:
        if self._previous is None and _in_main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_interrupt)

    def give_up(self) -> None:
        """From now until exit, Ctrl+C is ignored: the user has been told what to run."""
        if _in_main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self._previous = None

    def disarm(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_interrupt(self, _signum, _frame) -> None:
        self.count += 1
        if self.count == 1:
            self.ui.warn(f"Still tearing down {self.run_name}; press Ctrl+C again to stop waiting "
                         f"(then run `{stop_command(self.run_name)}`)")
            return
        raise _GaveUp()


def _parallel(calls: list[Callable], swallow: bool = False) -> list:
    if not calls:
        return []
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        results = []
        for future in futures:
            try:
                results.append(future.result())
            except Exception:
                if not swallow:
                    raise
        return results


def _connect_all(outputs: StackOutputs, run_directory: Path) -> list[NodeSession]:
    known_hosts = run_directory / "known_hosts"
    write_known_hosts(known_hosts, outputs.nodes)
    key = Path(outputs.key_path)
    nodes = sorted(outputs.nodes, key=lambda n: n.rank)
    if all(node.address.startswith("127.") for node in nodes):
        return _parallel([lambda n=n: NodeSession(n, key, known_hosts) for n in nodes])
    # A fresh cloud instance takes a while to answer SSH and to finish its first-boot script.
    return _parallel([lambda n=n: NodeSession.when_ready(n, key, known_hosts) for n in nodes])


@contextlib.contextmanager
def _forward_ports(plan: RunPlan, master: NodeSession, ui: RunUI):
    from dstack_iac.execution.ports import forward_ports

    with forward_ports(master, plan.configuration.ports) as forwarded:
        for local, remote in forwarded:
            ui.say(f"Forwarding http://127.0.0.1:{local} -> port {remote} of node 0 (while attached)")
        yield


def _run_commands(plan: RunPlan, outputs: StackOutputs, sessions: list[NodeSession], log: RunLog, ui: RunUI,
                  interrupts: "_Interrupts") -> int:
    configuration = plan.configuration
    nodes_ips = [node.private_address for node in sorted(outputs.nodes, key=lambda n: n.rank)]
    gpus_per_node = plan.offer.gpu.count if plan.offer.gpu else 0
    commands = (configuration.build if plan.build else []) + configuration.commands
    local = plan.backend == "local"
    pip_cache = str(cache_dir() / "pip") if local else None
    failures: list[tuple[int, int]] = []
    lock = threading.Lock()

    def stop_others(session: NodeSession) -> None:
        for other in sessions:
            if other is not session:
                threading.Thread(target=other.stop, daemon=True).start()

    def run_node(session: NodeSession) -> int:
        rank = session.endpoint.rank
        node_dir = str(Path(session.endpoint.working_dir).parent)
        environment = node_environment(
            run_name=plan.run_name, rank=rank, nodes_ips=nodes_ips, gpus_per_node=gpus_per_node,
            working_dir=session.endpoint.working_dir, venv_dir=f"{node_dir}/venv", user_env=configuration.env,
        )
        # A cloud node keeps its wheelhouse next to its runs' directories; local runs share the host's.
        node_cache = cache_dir() if local else Path(node_dir).parent
        wheelhouse = str(wheelhouse_dir()) if local else str(node_cache / "wheels")
        if configuration.image:  # clouds only: planning refuses an image on local
            script = render_container_script(
                environment=environment, commands=commands, image=configuration.image, gpus=gpus_per_node > 0,
                volume_paths=[m.path for m in plan.mounts if m.rank == rank], shell=configuration.shell)
        else:
            script = render_script(environment=environment, commands=commands, python=plan.python,
                                   pip_cache_dir=pip_cache, wheelhouse=wheelhouse,
                                   venv_seeds=str(node_cache / "venv-seeds"), shell=configuration.shell)
        prefix = f"[{rank}] " if plan.nodes > 1 else ""
        # Clouds mount network volumes at their path at boot; local runs in a mount namespace.
        mounts = [(m.source, m.path) for m in plan.mounts if m.rank == rank] if local else []
        try:
            code = session.run_script(script, log.emit, prefix, mounts)
        except NodeLost:
            if not session.stopped:  # a node we stopped on purpose is not lost
                stop_others(session)
                raise
            code = 143
        if code != 0:
            with lock:
                first = not failures
                failures.append((rank, code))
            if first and not session.stopped:
                if plan.nodes > 1:
                    ui.warn(f"Node {rank} exited with code {code}: stopping the other nodes")
                stop_others(session)
        return code

    deadline = configuration.max_duration
    timer = None
    if deadline:
        def on_timeout():
            ui.warn(f"max_duration ({deadline}s) reached: stopping the run")
            failures.append((-1, EXIT_TIMEOUT))
            for session in sessions:
                session.stop()

        timer = threading.Timer(deadline, on_timeout)
        timer.daemon = True
        timer.start()
    pool = ThreadPoolExecutor(max_workers=len(sessions))
    futures = [pool.submit(run_node, session) for session in sessions]
    try:
        wait(futures)
    except BaseException as exc:
        # Ctrl+C or SIGTERM: say so at once, stop the commands everywhere, let the node threads
        # return, re-raise.
        if isinstance(exc, (KeyboardInterrupt, _Terminated)):
            interrupts.caught(exc, "Terminated" if isinstance(exc, _Terminated) else "Interrupted")
        _parallel([s.stop for s in sessions], swallow=True)
        wait(futures, timeout=30)
        raise
    finally:
        pool.shutdown(wait=False)
        if timer:
            timer.cancel()
    codes = [future.result() for future in futures]
    if failures:
        return failures[0][1] if failures[0][1] > 0 else 1
    return max(codes) if any(codes) else 0
