"""Who runs dstack-iac and on which machine: what run records say about their owner, and what a
provider checks before it acts on a process or a path (those of another machine are never its
business). Standard library only: the package's provider process reads it.
"""

from __future__ import annotations

import functools
import getpass
import os
import socket
from pathlib import Path

OWNER_ENV = "DSTACK_IAC_OWNER"
# Only for machines whose /etc/machine-id is shared (cloned images) and for tests that stand for
# two machines: a wrong value lets one machine act on another's processes.
HOST_ID_ENV = "DSTACK_IAC_HOST_ID"


def owner() -> str:
    """The run's owner as a team sees it: $DSTACK_IAC_OWNER (e.g. an e-mail), else the login."""
    configured = os.environ.get(OWNER_ENV, "").strip()
    if configured:
        return configured
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def host_name() -> str:
    return os.environ.get(HOST_ID_ENV, "").strip() or socket.gethostname()


@functools.cache
def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id", "/proc/sys/kernel/random/boot_id"):
        try:
            text = Path(path).read_text().strip().replace("-", "")
        except OSError:
            continue
        if text:
            return text[:16]
    return "unknown"


def host_id() -> str:
    """This machine: `hostname/machine-id` (or $DSTACK_IAC_HOST_ID)."""
    configured = os.environ.get(HOST_ID_ENV, "").strip()
    if configured:
        return configured
    return f"{socket.gethostname()}/{_machine_id()}"
