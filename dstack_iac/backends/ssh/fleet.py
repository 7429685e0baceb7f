"""Create and delete SSH fleets: each is its own long-lived Pulumi stack (`fleet-<name>`) whose
resources check every host over SSH (reachable, host key recorded, inventory) and export what
they found, which is saved as the fleet's record (records.py) for planning and `fleet list`.

Creating a fleet writes nothing on its hosts; only runs do (their leases). A fleet that cannot
reach one of its hosts is not created at all: the error names the host and what SSH said.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from dstack_iac.backends.ssh import records
from dstack_iac.backends.ssh.config import FleetConfiguration, ResolvedHost
from dstack_iac.errors import BadInput, Conflict, DstackIacError, InfrastructureError
from dstack_iac.infra.engine import EngineError
from dstack_iac.infra.events import StackProgress
from dstack_iac.infra.stack import ManagedStack, stack_exists

FLEET_STACK_PREFIX = "fleet-"

Say = Callable[[str], None]


class FleetExists(Conflict):
    pass


class FleetInUse(Conflict):
    pass


class UnknownFleetName(BadInput):
    pass


class FleetNotCreated(InfrastructureError):
    pass


class FleetBusy(Conflict):
    pass


@contextlib.contextmanager
def claimed(name: str) -> Iterator[None]:
    """The fleet's name, held by this process while it creates or deletes the fleet: an flock
    on `fleets/<name>.lock` (the kernel drops it when the process dies), so two `fleet create`
    of one name cannot both go on, and one never destroys the stack the other is making. The
    holder removes the file when done; a claim whose file is no longer the one at that path
    (removed meanwhile) is taken again."""
    directory = records.fleets_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FleetBusy(f"fleet {name!r} is being created or deleted by another dstack-iac process; "
                            "try again when it is done") from None
        try:
            current, held = os.stat(path), os.fstat(fd)
            if (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def fleet_stack_name(name: str) -> str:
    return f"{FLEET_STACK_PREFIX}{name}"


def check_hosts(configuration: FleetConfiguration, base_dir: Path) -> list[tuple[str, str]]:
    """(field, problem) pairs found before connecting: missing identity files, hosts another
    fleet already has (their locks would not see each other's leases)."""
    problems = []
    taken = {(host.hostname, host.port, host.user): fleet.name for fleet in records.all_fleets()
             for host in fleet.hosts if fleet.name != configuration.name}
    for index, host in enumerate(configuration.resolved_hosts(base_dir)):
        if not Path(host.identity_file).is_file():
            problems.append((configuration.identity_field(index), f"the identity file {host.identity_file} does not exist"))
        if host.proxy_jump is not None and not Path(host.proxy_jump.identity_file).is_file():
            problems.append(("ssh_config.proxy_jump.identity_file",
                             f"the identity file {host.proxy_jump.identity_file} does not exist"))
        other = taken.get((host.hostname, host.port, host.user))
        if other:
            problems.append((f"ssh_config.hosts[{index}]", f"host {host.endpoint} is already in fleet {other}: a host "
                                                           "belongs to one fleet"))
    return problems


def users_of(name: str) -> list[str]:
    """Runs that hold (or may still hold) a lease on one of the fleet's hosts."""
    return sorted({lease.run for leases in records.users(name).values() for lease in leases})


def create_fleet(configuration: FleetConfiguration, configuration_path: Path, say: Say = lambda _: None
                 ) -> records.FleetRecord:
    with claimed(configuration.name):
        return _create_fleet(configuration, configuration_path, say)


def _create_fleet(configuration: FleetConfiguration, configuration_path: Path, say: Say) -> records.FleetRecord:
    if records.load(configuration.name) is not None:
        raise FleetExists(f"a fleet named {configuration.name!r} exists already (see `dstack-iac fleet list`); "
                          f"delete it first to create it again")
    from dstack_iac.backends.ssh.resources import SshFleet

    hosts = configuration.resolved_hosts(configuration_path.parent)
    found: list[dict] = []

    def program() -> None:
        import pulumi

        fleet = SshFleet("fleet", fleet=configuration.name, hosts=hosts, network=configuration.ssh_config.network)
        pulumi.export("hosts", fleet.hosts)
        fleet.hosts.apply(found.extend)

    progress = StackProgress(say)
    stack = ManagedStack(fleet_stack_name(configuration.name))
    if stack_exists(stack.name):
        # A create that was cut short (its process killed: the name's claim is ours now, so it
        # is not running) left its stack without a record; it wrote nothing on the hosts, so it
        # simply goes.
        say(f"removing the stack {stack.name} a create of fleet {configuration.name} cut short left behind")
        stack.release_abandoned_locks(wait_seconds=10)
        stack.destroy(remove=True)
    stack.create()
    try:
        stack.up(program, on_event=progress)
    except BaseException as exc:
        # A fleet that could not reach every host is not created: nothing of it is left.
        cleanup = _destroy_quietly(stack)
        if isinstance(exc, EngineError):
            text = progress.error_text() or exc.render()
            raise FleetNotCreated(f"fleet {configuration.name} was not created:\n{_host_errors(text)}{cleanup}") \
                from None
        if cleanup:
            say(cleanup.strip())
        raise
    stack.set_tags({"dstack-iac:fleet": configuration.name})
    record = records.FleetRecord(
        name=configuration.name, configuration=str(configuration_path), placement=configuration.placement,
        env=configuration.env, hosts=[_host_record(host, outputs) for host, outputs in zip(hosts, found)],
        created_at=records.now())
    records.save(record)
    return record


def _destroy_quietly(stack: ManagedStack) -> str:
    """Destroy the stack of a create that failed; what went wrong doing so, as a line to append
    to the create's own error (which is the one the user needs), else ""."""
    try:
        stack.destroy(remove=True)
    except Exception as exc:  # noqa: BLE001 - reported with the create's error, never instead of it
        what = exc.render() if isinstance(exc, DstackIacError) else str(exc)
        return (f"\nand its stack {stack.name} could not be removed ({what.strip()[:500]}): "
                f"`dstack-iac fleet delete {stack.name[len(FLEET_STACK_PREFIX):]}` removes it")
    return ""


def _host_errors(text: str) -> str:
    """The hosts' own messages (HostError: "host LABEL (...): ...") out of the engine's
    diagnostics, which wrap them in the engine's own words; the whole text when there are none."""
    lines = [f"  {line[line.index('host '):]}" for line in text.splitlines() if "host " in line]
    return "\n".join(dict.fromkeys(lines)) or text


def _host_record(host: ResolvedHost, outputs: dict) -> records.HostRecord:
    return records.HostRecord(
        label=host.label, hostname=host.hostname, port=host.port, user=host.user, identity_file=host.identity_file,
        proxy_jump=host.proxy_jump, internal_ip=host.internal_ip, private_address=outputs["private_address"],
        blocks=int(outputs["block_count"]), host_key=outputs["host_key"], fingerprint=outputs["fingerprint"],
        jump_host_key=outputs.get("jump_host_key"), inventory=records.Inventory.model_validate(outputs["inventory"]))


def delete_fleet(name: str, say: Say = lambda _: None) -> records.FleetRecord | None:
    """Delete the fleet (its stack and record); None when only a stack was left (a create cut
    short), which goes too."""
    with claimed(name):
        record = records.load(name)
        stack_name = fleet_stack_name(name)
        if record is None and not stack_exists(stack_name):
            raise UnknownFleetName(f"no fleet named {name!r} (see `dstack-iac fleet list`)")
        users = users_of(name)
        if users:
            raise FleetInUse(f"fleet {name!r} is in use by {', '.join(users)}: stop {'them' if len(users) > 1 else 'it'} "
                             f"first (`dstack-iac stop {users[0]}`)")
        if stack_exists(stack_name):
            stack = ManagedStack(stack_name)
            if record is None:
                say(f"fleet {name} has no record, only the stack {stack_name} a create cut short left: removing it")
                stack.release_abandoned_locks(wait_seconds=10)
            stack.destroy(on_event=StackProgress(say), remove=True)
        records.forget(name)
        return record
