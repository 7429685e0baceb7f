"""Detached runs and schedules: a process of the user's that owns them, apart from any terminal.

`run -d` (and a scheduled task) hands the confirmed plan to `python -m dstack_iac.runs.supervisor`,
started in a session of its own: closing the terminal (SIGHUP to the CLI's process group) and the
CLI's exit do not reach it. The supervisor runs the very lifecycle an attached run runs
(`execute_run`: provisioning, retry, max_duration, utilization policies, the lease renewal,
teardown on every signal), minus port forwarding, which `attach` does. The nodes' output goes to
the run's log as for an attached run; the supervisor's own messages go to `events.log` beside
it, which `attach` shows. If the supervisor dies, the kernel releases its claim on the run:
`ps` shows the run orphaned and `stop` cleans it up (the nodes end themselves at the lease).

The plan reaches the supervisor over a pipe only the CLI holds (never argv or a file: it carries
the values of `${{ env.NAME }}` references), as a pickle, which is safe from its one writer. The
CLI returns once the supervisor says it owns the run (one JSON line on its stdout), so `ps`
shows the run as soon as the prompt is back, and a name already taken is the CLI's error.
"""

from __future__ import annotations

import json
import os
import pickle
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dstack_iac.errors import DstackIacError, ExitStatus
from dstack_iac.model.plan import RunPlan
from dstack_iac.paths import STATE_DIR_ENV, open_private_append, state_dir

EVENTS_FILE = "events.log"
HANDSHAKE_TIMEOUT = 60.0


@dataclass
class DetachedRequest:
    """What the CLI hands the supervisor."""

    plan: RunPlan
    archive: bytes
    schedule: list[str] = field(default_factory=list)  # cron expressions (UTC): register, then run at each


class SupervisorFailed(DstackIacError):
    pass


def start_supervisor(request: DetachedRequest, timeout: float = HANDSHAKE_TIMEOUT) -> int:
    """Start the supervisor and wait until it owns the run (or the schedule); its pid. The
    supervisor's refusal (a name in use) is raised here, with its exit status."""
    env = {**os.environ, STATE_DIR_ENV: str(state_dir())}  # a relative state dir means the caller's
    process = subprocess.Popen(
        [sys.executable, "-m", "dstack_iac.runs.supervisor"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=env, start_new_session=True, close_fds=True)
    try:
        process.stdin.write(pickle.dumps(request))
        process.stdin.close()
    except BrokenPipeError:
        pass
    answer = await_answer(process, timeout)
    if answer.get("ok"):
        return process.pid
    process.wait(timeout=30)
    raise DstackIacError(answer.get("message", "the supervisor failed"),
                         exit_status=ExitStatus(answer.get("exit_status", int(ExitStatus.FAILED))))


def await_answer(process: subprocess.Popen, timeout: float) -> dict:
    """The supervisor's one JSON line, read with a deadline (a supervisor that hangs before it
    answers must not hang the CLI); on silence or an early exit it is killed (it has created
    nothing before it answers) and SupervisorFailed says what it printed."""
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    output = pending = b""
    why = "exited before it answered"
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                why = f"did not answer within {timeout:g}s"
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            output += chunk
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                try:
                    answer = json.loads(line)
                except ValueError:
                    continue  # a warning printed while importing: keep reading
                if isinstance(answer, dict):
                    process.stdout.close()
                    return answer
    process.kill()
    process.wait(timeout=30)
    process.stdout.close()
    printed = output.decode(errors="replace").strip()[-2000:]
    raise SupervisorFailed(f"the run's supervisor {why}" + (f": {printed}" if printed else ""))


def _answer(payload: dict) -> None:
    os.write(1, (json.dumps(payload) + "\n").encode())


def _detach_output(path: Path) -> None:
    """From now on the supervisor's output goes to `path`: the CLI and its pipe are gone."""
    handle = open_private_append(path)
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    handle.close()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def events_ui(prefix: str = ""):
    """A RunUI writing the run's messages to this process's output (the events log); the
    nodes' output is already in the run's log."""
    from dstack_iac.runs.log import RunUI

    def write(text: str) -> None:
        sys.stdout.write(f"{prefix}{text}\n")
        sys.stdout.flush()

    return RunUI(say=write, warn=write, line=lambda _text: None, resource=lambda text: write(f"  {text}"))


def supervise_run(request: DetachedRequest, on_claimed=None) -> int:
    """Run the plan to the end with the attached lifecycle; `on_claimed` once the name is ours."""
    from dstack_iac.runs.access import AccessHook
    from dstack_iac.runs.build_cache import build_hooks
    from dstack_iac.runs.lifecycle import Run
    from dstack_iac.backends.registry import get_backend

    plan = request.plan

    class SupervisedRun(Run):
        def claim_name(self) -> None:
            super().claim_name()
            if on_claimed is not None:
                on_claimed(self)

    backend = get_backend(plan.backend)
    run = SupervisedRun(plan, backend, events_ui(), request.archive,
                        hooks=[AccessHook(), *build_hooks(plan, backend)], forward_ports=False)
    result = run.run()
    verdict = "succeeded" if result.exit_code == 0 else f"failed with exit code {result.exit_code}"
    print(f"Run {plan.run_name} {verdict}", flush=True)
    return result.exit_code


def main() -> int:
    try:
        request: DetachedRequest = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from our own CLI's pipe
    except Exception as exc:  # noqa: BLE001 - told to the CLI, which says it
        _answer({"ok": False, "message": f"the supervisor could not read its plan: {exc}"})
        return int(ExitStatus.FAILED)
    if request.schedule:
        from dstack_iac.runs.schedule import serve_schedule

        return serve_schedule(request, _answer, _detach_output)

    def claimed(run) -> None:
        _answer({"ok": True, "pid": os.getpid()})
        _detach_output(run.run_dir / EVENTS_FILE)

    try:
        return supervise_run(request, on_claimed=claimed)
    except DstackIacError as exc:  # before the claim: nothing was created
        _answer({"ok": False, "message": exc.render(), "exit_status": int(exc.exit_status)})
        return int(exc.exit_status)


if __name__ == "__main__":
    sys.exit(main())
