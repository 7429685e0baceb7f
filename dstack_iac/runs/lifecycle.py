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
import functools
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from dstack_iac.backends.registry import get_backend
from dstack_iac.config.models import RetryEvent
from dstack_iac.errors import DstackIacError, ExitStatus, Interrupted, PhaseFailed, ProvisioningFailed
from dstack_iac.execution.group import CommandsOutcome, Connector, NodeGroup, StartGate, run_on_group
from dstack_iac.execution.lease import LeaseKeeper
from dstack_iac.execution.utilization import UtilizationWatch, window_seconds
from dstack_iac.execution.script import node_script
from dstack_iac.execution.session import NodeSession, write_known_hosts
from dstack_iac.execution.uploads import Uploads, pack_files, pack_uploads, upload_to_node
from dstack_iac.infra.engine import EngineError, get_engine
from dstack_iac.infra.events import StackProgress
from dstack_iac.infra.program import run_program
from dstack_iac.infra.stack import ManagedStack, ProgramFailed
from dstack_iac.model.backend import Backend, Capability
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.plan import RunInputs, RunPlan
from dstack_iac.paths import run_dir
from dstack_iac.runs.hooks import RunHook, RunHooks
from dstack_iac.runs.backend_sync import BackendSync
from dstack_iac.runs.interrupts import GaveUp, Interrupts, stop_command
from dstack_iac.runs.log import RunLog, RunUI
from dstack_iac.runs.stop import KEY_FILES
from dstack_iac.state import identity, runs
from dstack_iac.state.runs import RunClaim, RunRecord, RunStatus

RETRY_PAUSE = 2.0


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


def execute_run(plan: RunPlan, ui: RunUI, archive: bytes | None = None, backend: Backend | None = None, *,
                hooks: Sequence[RunHook] = (), forward_ports: bool = True) -> RunResult:
    """Run `plan` to the end in this process (attached, or a detached run's supervisor, which
    forwards no ports: nobody is there to use them). Raises only when the run never started (its
    name is taken): then nothing was created."""
    return Run(plan, backend or get_backend(plan.backend), ui, archive, hooks=hooks, forward_ports=forward_ports).run()


class Run:
    def __init__(self, plan: RunPlan, backend: Backend, ui: RunUI, archive: bytes | None, *,
                 hooks: Sequence[RunHook] = (), forward_ports: bool = True):
        self.plan = plan
        self.backend = backend
        self.ui = ui
        self.archive = archive
        self.uploads: Uploads | None = None
        self.hooks = RunHooks(hooks)
        self.forward_ports = forward_ports
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
        self._backend_sync: BackendSync | None = None
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
            if self._backend_sync is not None:
                self._backend_sync.close()
            if self.claim is not None:
                self.claim.release()
        return RunResult(exit_code=exit_code, status=status, phases=self.phases)

    def claim_name(self) -> None:
        """Own the run's name before anything is created (RunNameTaken otherwise)."""
        self.record = RunRecord(
            name=self.plan.run_name, status=RunStatus.PROVISIONING, backend=self.plan.backend, nodes=self.plan.nodes,
            configuration=self.plan.configuration_path, owner_pid=os.getpid(), owner=identity.owner(),
            created_at=time.time(), volumes=self.plan.volume_names, lease_seconds=self.plan.lease_seconds,
            lease_renewed_at=time.time(), price_per_hour=self.plan.total_price,
            priority=self.plan.configuration.priority or 0)
        self.claim = runs.claim(self.record, note=self.ui.warn)
        self.log = RunLog(self.record.log_path, self.ui, self.plan.secret_values)
        # Heartbeat, shipped log and remote stop requests, for everyone sharing the backend.
        self._backend_sync = BackendSync(lambda: self.record, self.record.log_path, self.ui.warn).start()

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
        clone_on_node = Capability.REPO_CLONE_ON_NODE in self.backend.capabilities
        if self.archive is not None and not self.plan.configuration.repos:
            self.uploads = Uploads(self.archive, None, pack_files(self.plan))
        else:
            self.uploads = pack_uploads(self.plan, clone_on_node)
        self.inputs = self.backend.prepare(self.plan, self.run_dir)
        creating.result()

    def tag_stack(self) -> None:
        """Tag the stack while the commands run: off the run's critical path, and never while an
        update reads the tags (the engine reads them at the start of every update)."""
        if self._tagging is not None:
            return
        tags = {**(self.plan.configuration.tags or {}),  # the task's own `tags`; ours win a clash
                "dstack-iac:run": self.plan.run_name, "dstack-iac:owner": self.record.owner,
                "dstack-iac:backend": self.plan.backend, "dstack-iac:configuration": self.plan.configuration_path}
        self._tagging = threading.Thread(target=self._quietly, args=(self.stack.set_tags, tags), daemon=True)
        self._tagging.start()

    def provision(self) -> list[NodeEndpoint]:
        plural = "s" if self.plan.nodes > 1 else ""
        self.ui.say(f"Provisioning {self.plan.nodes} node{plural} ({self.plan.backend})...")
        nodes: list[dict] = []
        self._connector = Connector(lambda endpoint: self.backend.connect(endpoint, self.inputs),
                                    self._ready_node, self._announce)
        program = run_program(self.plan, self.backend, self.inputs, on_nodes=lambda resolved: nodes.extend(resolved),
                              on_node=self._node_exists)
        engine = self.stack.engine
        from dstack_iac.infra.policy import check_findings, engine_args, packs_of_plan

        # The packs that passed the review judge the update too, each resource as it is created.
        policy_args = engine_args(packs_of_plan(self.plan.policy_packs), self.run_dir) if self.plan.policy_packs else []
        try:
            with self.interrupts.while_running(engine.cancel):
                self.stack.up(program, on_event=self.progress, extra_args=policy_args)
        except EngineError as exc:
            self.interrupts.checkpoint()  # a cancelled update is our doing: stop, do not blame the cloud
            check_findings(self.progress.policy_findings)  # a policy's refusal, by its own words
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

    def _ready_node(self, session: NodeSession) -> None:
        upload_to_node(session, self.plan, self.uploads, self.backend.node_runtime(self.plan, session.endpoint))

    def _announce(self, what: str) -> None:
        count = self.plan.nodes
        if what == "connect":
            self.ui.say(f"Connecting to {count} node{'s' if count > 1 else ''}...")
        else:
            what = "the repo" if self.uploads.repo is not None else "the working directory"
            what += " and files" if self.uploads.files is not None else ""
            self.ui.say(f"Uploading {what} ({self.uploads.size / 1024:.0f} KB)...")

    def connect(self) -> None:
        write_known_hosts(self.inputs.known_hosts, self._endpoints)  # for people's own `ssh`, later
        self._connector.wait_connected(self._endpoints, abort=self.interrupts.checkpoint)

    def upload(self) -> None:
        self.group = self._connector.wait_ready(self._endpoints, abort=self.interrupts.checkpoint)
        if self.plan.lease_seconds:
            self._lease = LeaseKeeper(self.group, self.plan.lease_seconds, self._lease_renewed).start()
        self.hooks.nodes_ready(self)

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
        slots = [node.gpus if node.gpus is not None else self._gpus_of(node.rank) for node in self._endpoints]
        outcome = CommandsOutcome()
        grace = configuration.stop_duration
        gate = StartGate(configuration.startup_order.value, [node.rank for node in self._endpoints],
                         abandoned=lambda: outcome.stopped_by is not None or outcome.first_failure is not None
                         or self.interrupts.requested is not None)

        def run_node(session: NodeSession) -> int:
            endpoint = session.endpoint
            runtime = self.backend.node_runtime(self.plan, endpoint)
            script = node_script(self.plan, endpoint, runtime, nodes_ips, slots[endpoint.rank], slots)
            prefix = f"[{endpoint.rank}] " if self.plan.nodes > 1 else ""
            if not gate.wait_turn(endpoint.rank):
                return 143
            return session.run_script(script, self.log.emit, prefix, runtime,
                                      on_start=lambda: gate.started(endpoint.rank))

        def on_node_failed(rank: int, code: int) -> None:
            if self.plan.nodes > 1:
                self.ui.warn(f"Node {rank} exited with code {code}: stopping the other nodes")

        def stop_all(reason: str, status: ExitStatus, message: str) -> None:
            if outcome.stop_all(reason, int(status)):
                self.ui.warn(message)
                self.group.stop(grace)

        timer = None
        if configuration.max_duration:
            timer = threading.Timer(configuration.max_duration, stop_all, args=(
                "max_duration", ExitStatus.TIMEOUT, f"max_duration ({configuration.max_duration}s) reached: stopping "
                                                    "the run"))
            timer.daemon = True
            timer.start()
        try:
            with contextlib.ExitStack() as context:
                self._forward_ports(context)
                context.enter_context(self.hooks.executing(self))
                policy = configuration.utilization_policy
                if policy is not None:
                    context.enter_context(UtilizationWatch(
                        self.group.sessions, window_seconds(policy.time_window), policy.min_gpu_utilization,
                        lambda window: stop_all("utilization_policy", ExitStatus.IDLE,
                                                f"utilization_policy: every GPU stayed below "
                                                f"{policy.min_gpu_utilization}% for {window:g}s: stopping the run"),
                        venv_dirs=[f"{session.node_dir}/venv" for session in self.group.sessions]))
                context.enter_context(self.interrupts.while_running(functools.partial(self.group.stop, grace)))
                return run_on_group(
                    self.group, run_node, on_node_failed=on_node_failed, outcome=outcome, stop_grace=grace,
                    master_done_stops_all=configuration.stop_criteria.value == "master-done",
                    on_master_done=lambda: self.ui.say("The master finished (stop_criteria: master-done): stopping "
                                                       "the workers"))
        finally:
            if timer is not None:
                timer.cancel()

    def _gpus_of(self, rank: int) -> int:
        gpu = self.plan.offer_of(rank).gpu
        return gpu.count if gpu else 0

    def _forward_ports(self, context: contextlib.ExitStack) -> None:
        """Each group's ports, from its first node, while attached."""
        if not self.forward_ports:
            return
        sessions = {session.endpoint.rank: session for session in self.group.sessions}
        for group, spec in zip(self.plan.groups, self.plan.configuration.node_groups):
            if not spec.ports:
                continue
            forwarded = context.enter_context(self.backend.forward_ports(sessions[group.first_rank], spec.ports))
            for local, remote in forwarded:
                self.ui.say(f"Forwarding http://127.0.0.1:{local} -> port {remote} of node {group.first_rank} "
                            "(while attached)")

    # --- attempts and retry ------------------------------------------------------------------

    def attempts(self) -> int:
        retry = self.plan.configuration.retry
        give_up_at = time.monotonic() + retry.duration if retry else 0.0
        if retry and RetryEvent.NO_CAPACITY in retry.on_events:
            # A run that will wait for capacity does not jump ahead of higher priorities waiting.
            self._wait_behind_higher_priority(give_up_at)
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
            # Waiting for capacity, the run stays `pending` through its next attempts (until its
            # nodes exist): how runs of a lower priority see that it goes first.
            self._update_record(status=RunStatus.PENDING if outcome.event == RetryEvent.NO_CAPACITY
                                else RunStatus.PROVISIONING)
            if outcome.event == RetryEvent.NO_CAPACITY:
                self._wait_behind_higher_priority(give_up_at)
        if outcome.error is not None:
            raise outcome.error
        return outcome.exit_code

    def _wait_behind_higher_priority(self, give_up_at: float) -> None:
        """While runs of a higher `priority` wait for capacity on the same backend, they try first:
        this run waits (as long as its retry allows) until none is waiting."""
        announced: set[str] = set()
        while time.monotonic() < give_up_at:
            ahead = runs.outranking(self.record, runs.all_runs())
            if not ahead:
                return
            names = {other.name for other in ahead}
            if names - announced:
                listed = ", ".join(f"{other.name} (priority {other.priority})" for other in ahead)
                self.ui.say(f"Waiting for capacity behind {listed}: priority {self.record.priority} comes after")
                announced |= names
            self.interrupts.sleep(RETRY_PAUSE)

    def attempt(self) -> _Outcome:
        """Provision, connect, upload and run the commands once. A failure the backend
        classifies as a retry event ends the attempt; any other fails the run at once."""
        try:
            with self.phase(Phase.PROVISION):
                self.provision()
        except PhaseFailed as exc:
            return self._classified(exc, "Provisioning failed")
        if self.record.status == RunStatus.PENDING:
            self._update_record(status=RunStatus.PROVISIONING)  # it has its capacity
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
        torn_down = False
        try:
            if status == RunStatus.STOPPED and self.group is not None:
                self.group.stop(self.plan.configuration.stop_duration)
            self._close_group()
            # Closed once the nodes are stopped: what they print while stopping is kept.
            if self.log is not None:
                self.log.close()
            self.hooks.ended(self)
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
        if self.log is not None:
            self.log.close()
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
