"""Who may reach a cloud run's SSH port: the caller's own public address as /32."""

from __future__ import annotations

import ipaddress
import os
import urllib.request

from dstack_iac.errors import AccessError, BadInput

SSH_CIDR_ENV = "DSTACK_IAC_SSH_CIDR"
CHECK_IP_URL = "https://checkip.amazonaws.com"


class CallerAddressUnknown(AccessError):
    pass


def caller_ssh_cidr() -> str:
    """`$DSTACK_IAC_SSH_CIDR` (e.g. a VPN range), else this machine's public IPv4 as /32."""
    configured = os.environ.get(SSH_CIDR_ENV)
    if configured:
        try:
            return str(ipaddress.ip_network(configured, strict=False))
        except ValueError:
            raise BadInput(f"{SSH_CIDR_ENV}={configured!r} is not an address range, e.g. 203.0.113.7/32") from None
    try:
        with urllib.request.urlopen(CHECK_IP_URL, timeout=10) as response:
            address = ipaddress.ip_address(response.read().decode().strip())
    except (OSError, ValueError) as exc:
        raise CallerAddressUnknown(
            f"could not learn this machine's public address from {CHECK_IP_URL} ({exc}); set {SSH_CIDR_ENV} "
            "to the address range allowed to reach the nodes over SSH, e.g. 203.0.113.7/32") from None
    return f"{address}/32"
