"""A run from plan to teardown, as named phases:

    prepare    claim the run's name, the run's keys and inputs, create its stack
    provision  `pulumi up` of the run's program: the backend's cluster
    connect    SSH to every node (host keys pinned), once each is ready
    upload     the working directory to every node
    execute    the node script everywhere; ports forwarded while attached
    teardown   stop what runs, destroy and remove the stack, sweep what is left

Teardown always happens: after success, failure, an exception, and any signal (see
runs/interrupts.py). When it cannot finish, the user is told the exact command that does.
A failure says which phase failed; `retry` re-provisions on the events the backend recognises.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from dstack_iac.backends.registry import get_backend
from dstack_iac.config.models import RetryEvent
from dstack_iac.errors import DstackIacError, ExitStatus, Interrupted, PhaseFailed, ProvisioningFailed
from dstack_iac.execution.group import CommandsOutcome, Connector, NodeGroup, run_on_group
from dstack_iac.execution.lease import LeaseKeeper
from dstack_iac.execution.script import node_script
from dstack_iac.execution.session import NodeSession, write_known_hosts
from dstack_iac.execution.workdir import pack_working_dir
from dstack_iac.infra.engine import EngineError, get_engine
from dstack_iac.infra.events import StackProgress
from dstack_iac.infra.program import run_program
from dstack_iac.infra.stack import ManagedStack, ProgramFailed
from dstack_iac.model.backend import Backend
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.plan import RunInputs, RunPlan
from dstack_iac.paths import run_dir
from dstack_iac.runs.interrupts import GaveUp, Interrupts, stop_command
from dstack_iac.runs.log import RunLog, RunUI
from dstack_iac.state import runs
from dstack_iac.state.runs import RunClaim, RunRecord, RunStatus

RETRY_PAUSE = 2.0
KEY_FILES = ("id_ed25519", "id_ed25519.pub", "known_hosts")


class Phase(str, Enum):
    PREPARE = "prepare"
    PROVISION = "provision"
    CONNECT = "connect"
    UPLOAD = "upload"
    EXECUTE = "execute"
    TEARDOWN = "teardown"


@dataclass
class RunResult:
    exit_code: int
    status: RunStatus
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class _Outcome:
    """How one attempt ended: an exit code, and for a failure the retry event it counts as."""

    exit_code: int
    event: RetryEvent | None = None
    reason: str = ""
    error: BaseException | None = None


def execute_run(plan: RunPlan, ui: RunUI, archive: bytes | None = None, backend: Backend | None = None) -> RunResult:
    """Run `plan` to the end, attached to this process. Raises only when the run never started
    (its name is taken): then nothing was created."""
    return Run(plan, backend or get_backend(plan.backend), ui, archive).run()


class Run:
    def __init__(self, plan: RunPlan, backend: Backend, ui: RunUI, archive: bytes | None):
        self.plan = plan
        self.backend = backend
        self.ui = ui
        self.archive = archive
        self.interrupts = Interrupts(plan.run_name, ui.warn)
        self.phases: dict[str, float] = {}
        self.progress = StackProgress(ui.resource)
        self.claim: RunClaim | None = None
        self.record: RunRecord | None = None
        self.inputs: RunInputs | None = None
        self.stack: ManagedStack | None = None
        self.group: NodeGroup | None = None
        self.log: RunLog | None = None
        self._endpoints: list[NodeEndpoint] = []
        self._tagging: threading.Thread | None = None
        self._lease: LeaseKeeper | None = None
        self._connector: Connector | None = None
        self._record_lock = threading.Lock()
        self._record_unwritable = False

    @property
    def run_dir(self) -> Path:
        return run_dir(self.plan.run_name)

    # --- the whole run -----------------------------------------------------------------------

    def run(self) -> RunResult:
        self.interrupts.install(abandon=self._abandon)
        status, exit_code, message = RunStatus.FAILED, int(ExitStatus.FAILED), ""
        try:
            self.claim_name()
            try:
                with self.phase(Phase.PREPARE):
                    self.prepare()
                self.interrupts.checkpoint()
                exit_code = self.attempts()
                status = RunStatus.DONE if exit_code == 0 else RunStatus.FAILED
                self.interrupts.checkpoint()
            except Interrupted as exc:
                status, exit_code, message = RunStatus.STOPPED, int(exc.exit_status), exc.signal_name.lower()
            except GaveUp:
                self._gave_up()
                return RunResult(exit_code=int(ExitStatus.INTERRUPTED), status=RunStatus.STOPPED, phases=self.phases)
            except DstackIacError as exc:
                exit_code, message = int(exc.exit_status), exc.render()
                self.ui.warn(f"Run failed: {exc.render()}")
            except Exception as exc:  # noqa: BLE001 - a bug: reported, and the teardown still runs
                exit_code, message = int(ExitStatus.FAILED), f"{type(exc).__name__}: {exc}"
                self.ui.warn(f"Run failed (unexpected error): {type(exc).__name__}: {exc}")
                if os.environ.get("DSTACK_IAC_DEBUG"):
                    raise
            exit_code, status = self.finish(exit_code, status, message)
        finally:
            self.interrupts.restore()
            if self.claim is not None:
                self.claim.release()
        return RunResult(exit_code=exit_code, status=status, phases=self.phases)

    def claim_name(self) -> None:
        """Own the run's name before anything is created (RunNameTaken otherwise)."""
        self.record = RunRecord(
            name=self.plan.run_name, status=RunStatus.PROVISIONING, backend=self.plan.backend, nodes=self.plan.nodes,
            configuration=self.plan.configuration_path, owner_pid=os.getpid(), owner=getpass.getuser(),
            created_at=time.time(), volumes=self.plan.volume_names, lease_seconds=self.plan.lease_seconds,
            lease_renewed_at=time.time())
        self.claim = runs.claim(self.record)
        self.log = RunLog(self.record.log_path, self.ui)

    @contextlib.contextmanager
    def phase(self, phase: Phase) -> Iterator[None]:
        """Time a phase; a failure in it becomes PhaseFailed, which says which phase failed."""
        started = time.perf_counter()
        try:
            yield
        except PhaseFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - wrapped, never swallowed (signals are BaseExceptions)
            raise PhaseFailed(phase.value, exc) from exc
        finally:
            self.phases[phase.value] = self.phases.get(phase.value, 0.0) + time.perf_counter() - started

    # --- phases ------------------------------------------------------------------------------

    def prepare(self) -> None:
        self.stack = ManagedStack(self.plan.run_name)
        # The stack is created (an engine process) while this process packs the upload and makes keys.
        creating = _Background(self.stack.create)
        if self.archive is None:
            self.archive = pack_working_dir(self.plan.repo_dir)
        self.inputs = self.backend.prepare(self.plan, self.run_dir)
        creating.result()

    def tag_stack(self) -> None:
        """Tag the stack while the commands run: off the run's critical path, and never while an
        update reads the tags (the engine reads them at the start of every update)."""
        if self._tagging is not None:
            return
        tags = {"dstack-iac:run": self.plan.run_name, "dstack-iac:owner": self.record.owner,
                "dstack-iac:backend": self.plan.backend, "dstack-iac:configuration": self.plan.configuration_path}
        self._tagging = threading.Thread(target=self._quietly, args=(self.stack.set_tags, tags), daemon=True)
        self._tagging.start()

    def provision(self) -> list[NodeEndpoint]:
        plural = "s" if self.plan.nodes > 1 else ""
        self.ui.say(f"Provisioning {self.plan.nodes} node{plural} ({self.plan.backend})...")
        nodes: list[dict] = []
        self._connector = Connector(lambda endpoint: self.backend.connect(endpoint, self.inputs),
                                    lambda session: session.upload(self.archive), self._announce)
        program = run_program(self.plan, self.backend, self.inputs, on_nodes=lambda resolved: nodes.extend(resolved),
                              on_node=self._node_exists)
        engine = self.stack.engine
        try:
            with self.interrupts.while_running(engine.cancel):
                self.stack.up(program, on_event=self.progress)
        except EngineError as exc:
            self.interrupts.checkpoint()  # a cancelled update is our doing: stop, do not blame the cloud
            text = "\n".join(filter(None, [self.progress.error_text(), exc.render()]))
            raise ProvisioningFailed(text, capacity=self.backend.is_capacity_error(text)) from None
        self.interrupts.checkpoint()
        self.tag_stack()
        self._endpoints = sorted((NodeEndpoint.model_validate(node) for node in nodes), key=lambda n: n.rank)
        if len(self._endpoints) != self.plan.nodes:
            raise ProvisioningFailed(f"the stack reported {len(self._endpoints)} of {self.plan.nodes} nodes")
        return self._endpoints

    def _node_exists(self, node: dict) -> None:
        """A node is created (the others may not be yet): connect to it and upload already."""
        if self.interrupts.requested is None:
            self._connector.start(NodeEndpoint.model_validate(node))

    def _announce(self, what: str) -> None:
        count = self.plan.nodes
        if what == "connect":
            self.ui.say(f"Connecting to {count} node{'s' if count > 1 else ''}...")
        else:
            self.ui.say(f"Uploading the working directory ({len(self.archive) / 1024:.0f} KB)...")

    def connect(self) -> None:
        write_known_hosts(self.inputs.known_hosts, self._endpoints)  # for people's own `ssh`, later
        self._connector.wait_connected(self._endpoints, abort=self.interrupts.checkpoint)

    def upload(self) -> None:
        self.group = self._connector.wait_ready(self._endpoints, abort=self.interrupts.checkpoint)
        if self.plan.lease_seconds:
            self._lease = LeaseKeeper(self.group, self.plan.lease_seconds, self._lease_renewed).start()

    def _lease_renewed(self) -> None:
        self._update_record(lease_renewed_at=time.time())

    def _update_record(self, **changes) -> None:
        """The one way the run's record changes while it runs (the lease thread writes it too).
        A record that cannot be written (a full disk) never stops the run or its teardown."""
        with self._record_lock:
            self.record = self.record.model_copy(update=changes)
            try:
                runs.save(self.record)
            except DstackIacError as exc:
                if not self._record_unwritable:
                    self._record_unwritable = True
                    self.ui.warn(f"The run's record could not be saved ({exc.message}); the run goes on")


    def execute(self) -> int:
        configuration = self.plan.configuration
        nodes_ips = [node.private_address for node in self._endpoints]
        gpus_per_node = self.plan.offer.gpu.count if self.plan.offer.gpu else 0
        outcome = CommandsOutcome()

        def run_node(session: NodeSession) -> int:
            endpoint = session.endpoint
            runtime = self.backend.node_runtime(self.plan, endpoint)
            script = node_script(self.plan, endpoint, runtime, nodes_ips,
                                 endpoint.gpus if endpoint.gpus is not None else gpus_per_node)
            prefix = f"[{endpoint.rank}] " if self.plan.nodes > 1 else ""
            return session.run_script(script, self.log.emit, prefix, runtime.namespace_mounts)

        def on_node_failed(rank: int, code: int) -> None:
            if self.plan.nodes > 1:
                self.ui.warn(f"Node {rank} exited with code {code}: stopping the other nodes")

        timer = None
        if configuration.max_duration:
            def on_timeout() -> None:
                if outcome.stop_all("max_duration", int(ExitStatus.TIMEOUT)):
                    self.ui.warn(f"max_duration ({configuration.max_duration}s) reached: stopping the run")
                    self.group.stop()

            timer = threading.Timer(configuration.max_duration, on_timeout)
            timer.daemon = True
            timer.start()
        try:
            with self.backend.forward_ports(self.group.master, configuration.ports) as forwarded:
                for local, remote in forwarded:
                    self.ui.say(f"Forwarding http://127.0.0.1:{local} -> port {remote} of node 0 (while attached)")
                with self.interrupts.while_running(self.group.stop):
                    return run_on_group(self.group, run_node, on_node_failed=on_node_failed, outcome=outcome)
        finally:
            if timer is not None:
                timer.cancel()

    # --- attempts and retry ------------------------------------------------------------------

    def attempts(self) -> int:
        retry = self.plan.configuration.retry
        give_up_at = time.monotonic() + retry.duration if retry else 0.0
        attempt = 1
        while True:
            outcome = self.attempt()
            if outcome.event is None or not retry or outcome.event not in retry.on_events \
                    or time.monotonic() >= give_up_at:
                break
            attempt += 1
            self.ui.warn(f"{outcome.reason}: retrying (attempt {attempt}, on {outcome.event.value}; retry gives up "
                         f"in {max(0, round(give_up_at - time.monotonic()))}s)")
            self._close_group()
            with self.phase(Phase.TEARDOWN):
                self._wait_for_tags()
                self.stack.destroy(on_event=self.progress, remove=False)
                self.backend.sweep(self.plan.run_name, self.run_dir)
            self.interrupts.sleep(RETRY_PAUSE)
        if outcome.error is not None:
            raise outcome.error
        return outcome.exit_code

    def attempt(self) -> _Outcome:
        """Provision, connect, upload and run the commands once. A failure the backend
        classifies as a retry event ends the attempt; any other fails the run at once."""
        try:
            with self.phase(Phase.PROVISION):
                self.provision()
        except PhaseFailed as exc:
            return self._classified(exc, "Provisioning failed")
        try:
            with self.phase(Phase.CONNECT):
                self.connect()
            with self.phase(Phase.UPLOAD):
                self.upload()
        except PhaseFailed as exc:
            return self._classified(exc, "Nodes unreachable")
        self._update_record(status=RunStatus.RUNNING)
        try:
            with self.phase(Phase.EXECUTE):
                exit_code = self.execute()
        except PhaseFailed as exc:
            return self._classified(exc, "Lost a node")
        self.interrupts.checkpoint()
        if exit_code in (0, ExitStatus.TIMEOUT, ExitStatus.IDLE):  # stopped on purpose: not retried
            return _Outcome(exit_code)
        return _Outcome(exit_code, RetryEvent.ERROR, f"The commands failed with exit code {exit_code}")

    def _classified(self, failure: PhaseFailed, what: str) -> _Outcome:
        event = self.backend.classify(failure.cause)
        if event is None:
            raise failure
        return _Outcome(int(failure.exit_status), event, f"{what} ({_short(failure.cause)})", failure)

    # --- teardown ----------------------------------------------------------------------------

    def finish(self, exit_code: int, status: RunStatus, message: str) -> tuple[int, RunStatus]:
        """Tear down and record how the run ended; returns the final exit code and status."""
        self.interrupts.tearing_down = True
        if self.interrupts.requested is not None and status != RunStatus.STOPPED:
            # A signal that came while the run was ending still decides the documented exit code.
            status, exit_code = RunStatus.STOPPED, int(self.interrupts.requested.exit_status)
            message = self.interrupts.requested.signal_name.lower()
        if self.log is not None:
            self.log.close()
        torn_down = False
        try:
            if status == RunStatus.STOPPED and self.group is not None:
                self.group.stop()
            self._close_group()
            self._update_record(status=RunStatus.TERMINATING)
            with self.phase(Phase.TEARDOWN):
                torn_down = self.teardown()
        except GaveUp:
            self._gave_up()
            return int(ExitStatus.INTERRUPTED), RunStatus.STOPPED
        if not torn_down:
            return (exit_code or int(ExitStatus.INFRASTRUCTURE)), status
        for leftover in KEY_FILES:
            (self.run_dir / leftover).unlink(missing_ok=True)
        self._update_record(status=status, exit_code=exit_code, finished_at=time.time(), message=message)
        if self.interrupts.requested is not None and status != RunStatus.STOPPED:
            return int(self.interrupts.requested.exit_status), RunStatus.STOPPED
        return exit_code, status

    def teardown(self) -> bool:
        """Destroy and remove the stack, then sweep what the stack did not know; False (with the
        command that finishes the job) when it fails."""
        if self.stack is None:
            return True
        self._wait_for_tags()
        self.ui.say(f"Tearing down {self.plan.run_name}...")
        try:
            try:
                # A lock left by an engine that died (killed, not cancelled) would block the destroy.
                self.stack.release_abandoned_locks(wait_seconds=30)
                self.stack.destroy(on_event=self.progress, remove=True)
            except DstackIacError:
                # Once more, after sweeping what the stack holds (which frees a disk a run filled:
                # the engine cannot take its lock on a full one).
                self.backend.sweep(self.plan.run_name, self.run_dir)
                self.stack.release_abandoned_locks(wait_seconds=30)
                self.stack.destroy(on_event=self.progress, remove=True)
        except DstackIacError as exc:
            self.ui.warn(f"Teardown of {self.plan.run_name} did not finish ({exc.render()}). "
                         f"Clean up with: {stop_command(self.plan.run_name)}")
            return False
        finally:
            # Whatever the stack did or did not know (a node whose creation was cut short) goes too.
            self.backend.sweep(self.plan.run_name, self.run_dir)
        self.ui.say(f"Torn down: nothing of {self.plan.run_name} is left running.")
        return True

    def _wait_for_tags(self) -> None:
        if self._tagging is not None:
            self._tagging.join(timeout=60)

    def _gave_up(self) -> None:
        """The user stopped waiting: say what finishes the job; the run stays for `stop`."""
        self._close_group()
        self.ui.warn(f"Teardown of {self.plan.run_name} did not finish (interrupted). "
                     f"Clean up with: {stop_command(self.plan.run_name)}")

    def _close_group(self) -> None:
        if self._lease is not None:
            self._lease.stop()
            self._lease = None
        # The group's sessions are the connector's: each is closed once.
        if self._connector is not None:
            self._connector.close()
        elif self.group is not None:
            self.group.close()
        self._connector = None
        self.group = None

    def _abandon(self) -> None:
        """The user stopped waiting: stop the engine's processes (ours, by pid) so that nothing
        goes on half-done after we exit; `dstack-iac stop` takes over from the state."""
        get_engine().abandon()
        if self.group is not None:
            threading.Thread(target=self.group.close, daemon=True).start()

    @staticmethod
    def _quietly(call, *args) -> None:
        try:
            call(*args)
        except Exception:  # noqa: BLE001 - tags are a convenience; the run goes on without them
            pass


class _Background:
    """A call in a thread of its own; `result()` waits for it and raises what it raised."""

    def __init__(self, call) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call) -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            self._error = exc

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _short(exc: BaseException) -> str:
    if isinstance(exc, DstackIacError):
        return exc.render()
    return str(exc).strip() or type(exc).__name__


__all__ = ["Phase", "Run", "RunResult", "RunUI", "execute_run", "ProgramFailed"]
