"""The first-boot script of a cloud node (AWS user-data, GCP startup-script). Pure rendering.

It installs the run's host key (pinned by the client) and authorized key, prepares the run's
directories, mounts the network volumes, installs Docker (plus the NVIDIA container toolkit on GPU
nodes) when the task has an image, logs in to its registry and pulls it. The registry password
is in the text, so callers must treat the rendered script as a secret.
"""

from __future__ import annotations

import shlex

from dstack_iac.backends.cloud.spec import NODE_ROOT, NODE_USER, ClusterSpec, MountedVolume

READY_MARKER = f"{NODE_ROOT}/ready"
LEASE_FILE = f"{NODE_ROOT}/run/lease"  # touched by the run's owner over SSH (execution/lease.py)


def _lease_watchdog(spec: ClusterSpec) -> list[str]:
    """The node's dead-man switch, started once the node is ready: when the lease is not renewed
    for `lease_seconds`, the node shuts itself down (AWS then terminates the instance; a GCP
    instance stops, and `gc` deletes it)."""
    loop = (f'while sleep 5; do last=$(stat -c %Y {LEASE_FILE} 2>/dev/null) || continue; '
            f'if [ $(( $(date +%s) - last )) -gt {spec.lease_seconds} ]; then shutdown -h now; fi; done')
    return [
        f"touch {LEASE_FILE} && chown {NODE_USER}: {LEASE_FILE}",
        "if command -v systemd-run >/dev/null; then "
        f"systemd-run --unit=dstack-iac-lease --collect sh -c {shlex.quote(loop)}; "
        f"else nohup setsid sh -c {shlex.quote(loop)} >/dev/null 2>&1 & fi",
    ]


def _mount(volume: MountedVolume, device: str) -> list[str]:
    path = shlex.quote(volume.path)
    dev = shlex.quote(device)
    return [
        f"# volume {volume.name}",
        f"for _ in $(seq 60); do [ -e {dev} ] && break; sleep 2; done",
        f"blkid {dev} >/dev/null 2>&1 || mkfs.ext4 -q {dev}",
        f"mkdir -p {path}",
        f"mountpoint -q {path} || mount {dev} {path}",
        f"chown {NODE_USER}: {path}",
    ]


def render_node_setup(spec: ClusterSpec, rank: int, volume_devices: list[str], registry_password: str = "") -> str:
    """`volume_devices[i]` is where `spec.volumes[i]` appears (known once the disk is looked up);
    only the volumes of this rank are mounted. `registry_password` is the secret's plain value,
    given inside an apply."""
    host_key = spec.host_key(rank)
    lines = [
        "#!/bin/bash",
        "# dstack-iac node setup: rendered per run, runs once at first boot.",
        "set -euo pipefail",
        "export DEBIAN_FRONTEND=noninteractive",
        f"install -d -o {NODE_USER} -g {NODE_USER} {NODE_ROOT} {NODE_ROOT}/run {NODE_ROOT}/wheels",
    ]
    if host_key is not None:
        # The run's own host key: the client pins it, so no first-connection trust is needed.
        lines += [
            "install -m 600 /dev/null /etc/ssh/ssh_host_ed25519_key",
            f"cat > /etc/ssh/ssh_host_ed25519_key <<'DSTACK_HOST_KEY'\n{host_key.private.get_secret_value().strip()}"
            "\nDSTACK_HOST_KEY",
            f"echo {shlex.quote(host_key.public)} > /etc/ssh/ssh_host_ed25519_key.pub",
        ]
    lines += [
        f"install -d -m 700 -o {NODE_USER} -g {NODE_USER} /home/{NODE_USER}/.ssh",
        f"echo {shlex.quote(spec.authorized_key)} >> /home/{NODE_USER}/.ssh/authorized_keys",
        f"chown {NODE_USER}: /home/{NODE_USER}/.ssh/authorized_keys",
        "systemctl restart ssh 2>/dev/null || systemctl restart sshd",
        "command -v python3 >/dev/null && python3 -m venv --help >/dev/null 2>&1 || "
        "{ apt-get update -q && apt-get install -y -q python3-venv; }",
    ]
    if spec.shm_gb and not spec.image:
        # resources.shm_size without a container: the node's own /dev/shm gets that size.
        lines.append(f"mount -o remount,size={int(spec.shm_gb * 1024)}m /dev/shm")
    for volume, device in zip(spec.volumes, volume_devices):
        if volume.rank == rank:
            lines += _mount(volume, device)
    if spec.image:
        lines += [
            "if ! command -v docker >/dev/null; then curl -fsSL https://get.docker.com | sh; fi",
            f"usermod -aG docker {NODE_USER}",
        ]
        if spec.has_gpu(rank):
            lines += [
                "if ! command -v nvidia-ctk >/dev/null; then",
                "  curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey"
                " | gpg --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg",
                "  curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list"
                " | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#'"
                " > /etc/apt/sources.list.d/nvidia-container-toolkit.list",
                "  apt-get update -q && apt-get install -y -q nvidia-container-toolkit",
                "fi",
                "nvidia-ctk runtime configure --runtime=docker && systemctl restart docker",
            ]
        if spec.registry:
            registry = spec.registry
            lines.append(
                f"printf '%s' {shlex.quote(registry_password)} | docker login --username "
                f"{shlex.quote(registry.username)} --password-stdin {shlex.quote(registry.server)}"
            )
        lines.append(f"docker pull {shlex.quote(spec.image)}")
    if spec.lease_seconds:
        lines += _lease_watchdog(spec)
    lines.append(f"touch {READY_MARKER}")
    return "\n".join(lines) + "\n"
