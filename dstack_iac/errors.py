"""One error model for the whole package: every failure a user can meet is a `DstackIacError`
carrying its exit status, and the CLI turns it into one message and that status, once, at the
top (`cli/app.py`). Anything else that escapes is a bug: reported as such, with the traceback
only under `--debug` or `DSTACK_IAC_DEBUG=1`.

The exit statuses are one table, documented in docs/errors.md (a test keeps the two in sync).
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """What `dstack-iac` exits with. A run that reaches its commands exits with theirs."""

    OK = 0
    FAILED = 1  # the run failed (or an unexpected error: a bug)
    BAD_INPUT = 2  # configuration, flags, a field a backend cannot honour, a name in use
    NO_OFFER = 3  # nothing matches the requested resources
    ACCESS = 4  # credentials missing, or who the caller is cannot be learnt
    ENVIRONMENT = 5  # this machine lacks something: the Pulumi engine, sshd, a usable state dir
    CONFLICT = 6  # the thing is busy: a volume or fleet in use, a run owned by someone else
    INFRASTRUCTURE = 7  # provisioning or teardown failed in the engine or the cloud
    IDLE = 123  # stopped by utilization_policy: the GPUs stayed idle
    TIMEOUT = 124  # stopped by max_duration
    HANGUP = 129  # SIGHUP
    INTERRUPTED = 130  # Ctrl+C (SIGINT)
    TERMINATED = 143  # SIGTERM (e.g. `dstack-iac stop` from another terminal)


EXIT_STATUS_MEANINGS: dict[ExitStatus, str] = {
    ExitStatus.OK: "success (a run: its commands exited 0)",
    ExitStatus.FAILED: "the run failed; or an unexpected error (a bug: rerun with --debug and report it)",
    ExitStatus.BAD_INPUT: "bad input: configuration, flags, a field the chosen backend cannot honour, a run name in use",
    ExitStatus.NO_OFFER: "no offer matches the requested resources",
    ExitStatus.ACCESS: "no cloud credentials, or the caller's public address is unknown",
    ExitStatus.ENVIRONMENT: "this machine lacks something: the Pulumi engine, sshd, a usable state dir",
    ExitStatus.CONFLICT: "busy: a volume or fleet in use, a run owned by a live process elsewhere",
    ExitStatus.INFRASTRUCTURE: "provisioning or teardown failed (the message names the clean-up command)",
    ExitStatus.IDLE: "stopped by utilization_policy (GPUs idle for the whole time window)",
    ExitStatus.TIMEOUT: "stopped by max_duration",
    ExitStatus.HANGUP: "the terminal went away (SIGHUP); the run was torn down",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl+C); the run was torn down",
    ExitStatus.TERMINATED: "terminated (SIGTERM, e.g. `dstack-iac stop`); the run was torn down",
}


class DstackIacError(Exception):
    """A failure with a message meant for users and the exit status it ends the command with."""

    exit_status: ExitStatus = ExitStatus.FAILED

    def __init__(self, message: str, *, hint: str = "", exit_status: ExitStatus | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_status is not None:
            self.exit_status = exit_status

    def render(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class BadInput(DstackIacError):
    exit_status = ExitStatus.BAD_INPUT


class UnsupportedField(BadInput):
    """A field the chosen backend cannot honour: refused before anything is provisioned."""

    def __init__(self, field: str, backend: str, why: str, instead: str = "", where: str = ""):
        message = f"{field}: the {backend} backend cannot honour it: {why}"
        message += f"; {instead}" if instead else ""
        super().__init__(f"{where}: {message}" if where else message)
        self.field, self.backend, self.why, self.instead = field, backend, why, instead

    def located(self, where: str) -> UnsupportedField:
        """The same refusal, prefixed with the `file:line:column` of its field."""
        return UnsupportedField(self.field, self.backend, self.why, self.instead, where=where)


class NoOffer(DstackIacError):
    """No offer matches; the message says which constraint excluded what."""

    exit_status = ExitStatus.NO_OFFER


class AccessError(DstackIacError):
    exit_status = ExitStatus.ACCESS


class MissingCredentials(AccessError):
    pass


class EnvironmentProblem(DstackIacError):
    exit_status = ExitStatus.ENVIRONMENT


class Conflict(DstackIacError):
    exit_status = ExitStatus.CONFLICT


class InfrastructureError(DstackIacError):
    exit_status = ExitStatus.INFRASTRUCTURE


class ProvisioningFailed(InfrastructureError):
    """`pulumi up` did not finish. `capacity` is True only when the backend recognised the cloud
    saying it has no capacity (the one case `retry: no-capacity` is about)."""

    def __init__(self, message: str, *, capacity: bool = False, hint: str = ""):
        super().__init__(message, hint=hint)
        self.capacity = capacity


class NodeLost(DstackIacError):
    """A node stopped answering (its SSH session ended without an exit status): an interruption."""

    exit_status = ExitStatus.FAILED


class PhaseFailed(DstackIacError):
    """A phase of a run failed; the message names the phase. Keeps the cause's exit status."""

    def __init__(self, phase: str, cause: BaseException):
        text = cause.render() if isinstance(cause, DstackIacError) else (str(cause).strip() or type(cause).__name__)
        super().__init__(f"{phase} failed: {text}")
        self.phase = phase
        self.cause = cause
        if isinstance(cause, DstackIacError):
            self.exit_status = cause.exit_status


class Interrupted(BaseException):
    """A signal asked the run to stop (raised in the main thread, like KeyboardInterrupt).
    A BaseException, so `except Exception` on the way up never swallows it."""

    def __init__(self, signal_name: str, exit_status: ExitStatus):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_status = exit_status
