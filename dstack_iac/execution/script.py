"""The bash script every node runs: environment, virtualenv, then the commands, stopping at the
first failing one. Pure: rendering only.

Repeated installs are fast through a wheelhouse shared by all runs on a machine: a `pip` shim
ahead of the venv's own pip first downloads what an install needs into the wheelhouse (under a
lock, so concurrent nodes download each file once), then installs from the wheelhouse alone.
pip's own HTTP cache is not enough: it stores nothing when the package index sends no cache
headers, as many mirrors do.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from dstack_iac.config.interpolation import ENV_PREFIX, RUN_ARGS, references
from dstack_iac.execution.build import build_commands
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.plan import NodeRuntime, RunPlan

COMMANDS_STARTED = "__dstack_iac_commands_start__"


def node_environment(
    *, run_name: str, rank: int, nodes_ips: Sequence[str], gpus_per_node: int, working_dir: str, venv_dir: str,
    user_env: Mapping[str, str],
) -> dict[str, str]:
    return {
        **user_env,
        "DSTACK_RUN_NAME": run_name,
        "DSTACK_NODE_RANK": str(rank),
        "DSTACK_NODES_NUM": str(len(nodes_ips)),
        "DSTACK_MASTER_NODE_IP": nodes_ips[0],
        "DSTACK_NODES_IPS": "\n".join(nodes_ips),
        "DSTACK_GPUS_PER_NODE": str(gpus_per_node),
        "DSTACK_GPUS_NUM": str(gpus_per_node * len(nodes_ips)),
        "DSTACK_WORKING_DIR": working_dir,
        "DSTACK_VENV_DIR": venv_dir,
    }


class ShellValues:
    """The values a task's commands refer to (`${{ run.args }}`, `${{ env.NAME }}`), handed to
    the shell as variables, never as code: each reference becomes a variable expansion quoted
    for where it stands in the command (outside quotes, inside "...", inside '...'), so a value
    with `$(...)`, quotes or `;` is text. `bash` uses an array for the arguments; other shells,
    the positional parameters."""

    def __init__(self, run_args: Sequence[str] = (), env: Mapping[str, str] | None = None, bash: bool = True,
                 others: Mapping[str, str] | None = None):
        self.run_args = list(run_args)
        self.env = dict(env or {})
        self.bash = bash
        # Other references by their full name, e.g. groups[0].nodes[1].IP_ADDRESS.
        self.others = dict(others or {})

    @staticmethod
    def _variable(name: str) -> str:
        if name.startswith(ENV_PREFIX):
            return f"__dstack_env_{name[len(ENV_PREFIX):]}"
        return "__dstack_" + re.sub(r"[^A-Za-z0-9_]", "_", name)

    def _value(self, name: str) -> str:
        return self.env.get(name[len(ENV_PREFIX):], "") if name.startswith(ENV_PREFIX) else self.others.get(name, "")

    def definitions(self, commands: Sequence[str]) -> list[str]:
        """The variables `commands` refer to (nothing when they refer to none)."""
        used = {reference.name for command in commands for reference in references(command) if not reference.escaped}
        lines = [f"__dstack_env_{name}={shlex.quote(value)}" for name, value in self.env.items()
                 if f"{ENV_PREFIX}{name}" in used]
        lines += [f"{self._variable(name)}={shlex.quote(value)}" for name, value in self.others.items() if name in used]
        if RUN_ARGS in used:
            quoted = " ".join(shlex.quote(arg) for arg in self.run_args)
            lines.append(f"__dstack_args=({quoted})" if self.bash else f"set -- {quoted}".rstrip())
        return lines

    def _expansion(self, name: str, context: str) -> str:
        if name == RUN_ARGS:
            every, joined = ('"${__dstack_args[@]}"', "${__dstack_args[*]}") if self.bash else ('"$@"', "$*")
        else:
            every, joined = f'"${{{self._variable(name)}}}"', f"${{{self._variable(name)}}}"
        if context == "double":
            return joined
        if context == "single":
            return f"'\"{joined}\"'"
        return every

    def substitute(self, command: str) -> str:
        """The command with each reference replaced by its expansion; `$${{` gives `${{`."""
        found = {reference.start: reference for reference in references(command)}
        if not found:
            return command
        out: list[str] = []
        contexts = ["plain"]  # plain (also inside $(...) and `...`), single, double
        i = 0
        while i < len(command):
            reference = found.get(i)
            if reference is not None:
                if reference.escaped:
                    out.append(command[reference.start + 1:reference.end])
                else:
                    out.append(self._expansion(reference.name, contexts[-1]))
                i = reference.end
                continue
            char, top = command[i], contexts[-1]
            out.append(char)
            if top == "single":
                if char == "'":
                    contexts.pop()
            elif char == "\\" and i + 1 < len(command):
                out.append(command[i + 1])
                i += 1
            elif top == "double" and char == '"':
                contexts.pop()
            elif char == "$" and command.startswith("$(", i):
                out.append("(")
                contexts.append("subst")
                i += 1
            elif top in ("plain", "subst", "paren") and char == "(":
                contexts.append("paren")
            elif top in ("subst", "paren") and char == ")":
                contexts.pop()
            elif top != "double" and char == "'":
                contexts.append("single")
            elif top != "double" and char == '"':
                contexts.append("double")
            i += 1
        return "".join(out)

    def arguments(self, command: str) -> list[str]:
        """An entrypoint's argument: no shell reads it, so references become their values
        (`${{ run.args }}` standing alone gives one argument per run argument)."""
        if command.strip() in ("${{ run.args }}", "${{run.args}}"):
            return list(self.run_args)
        text = command
        for reference in reversed(references(command)):
            value = command[reference.start + 1:reference.end] if reference.escaped else \
                " ".join(self.run_args) if reference.name == RUN_ARGS else self._value(reference.name)
            text = text[:reference.start] + value + text[reference.end:]
        return [text]


PIP_SHIM = r'''#!/usr/bin/env bash
# dstack-iac: pip, installing from the shared wheelhouse what an install needs.
python="$DSTACK_VENV_DIR/bin/python"
if [ "${1:-}" = install ] && [ -n "${DSTACK_WHEELHOUSE:-}" ] && mkdir -p "$DSTACK_WHEELHOUSE" 2>/dev/null; then
  # Fetch into the wheelhouse only what is missing (one node at a time: each file is downloaded
  # once), then install from it alone. Whatever `pip download` cannot handle (e.g. -e) falls
  # through to a plain install.
  if ( if command -v flock >/dev/null; then flock 9; fi
       "$python" -m pip download --quiet --dest "$DSTACK_WHEELHOUSE" "${@:2}" >/dev/null 2>&1
     ) 9>"$DSTACK_WHEELHOUSE/.lock"; then
    log=$(mktemp)
    # The run's venv is short-lived: modules compile when first imported, not all at install.
    if "$python" -m pip install --no-index --find-links "$DSTACK_WHEELHOUSE" --no-compile "${@:2}" >"$log" 2>&1; then
      cat "$log"; rm -f "$log"; exit 0
    fi
    rm -f "$log"
  fi
fi
exec "$python" -m pip "$@"
'''


def _make_venv(python: str, seeds: str | None) -> list[str]:
    """Bash that creates the run's venv. With a seeds dir, `python -m venv` (4-5 s, mostly
    ensurepip) runs once per interpreter; each run's venv is made without pip (0.2 s) and gets
    pip copied from that seed. Any failure falls back to a plain `python -m venv`."""
    py = shlex.quote(python)
    if not seeds:
        return ['if [ ! -x "$DSTACK_VENV_DIR/bin/python" ]; then', f'  {py} -m venv "$DSTACK_VENV_DIR"', "fi"]
    seed = shlex.quote(f"{seeds}/{python.strip('/').replace('/', '-')}")
    return [
        'if [ ! -x "$DSTACK_VENV_DIR/bin/python" ]; then',
        f"  seed={seed}",
        '  if ! { mkdir -p "$(dirname "$seed")" && (',
        '         if command -v flock >/dev/null; then flock 9; fi',
        f'         [ -d "$seed/lib" ] || {{ rm -rf "$seed.partial" && {py} -m venv "$seed.partial" >/dev/null && mv "$seed.partial" "$seed"; }}',
        '       ) 9>"$seed.lock" &&',
        f'       {py} -m venv --without-pip "$DSTACK_VENV_DIR" &&',
        '       cp -a "$seed"/lib/python*/site-packages/. "$(echo "$DSTACK_VENV_DIR"/lib/python*/site-packages)/"; }; then',
        '    rm -rf "$DSTACK_VENV_DIR"',
        f'    {py} -m venv "$DSTACK_VENV_DIR"',
        "  fi",
        "fi",
    ]


CONTAINER_WORKDIR = "/workflow"  # where dstack mounts the repo in a task's container


def resolve_working_dir(base: str, working_dir: str | None, repo_root: str = CONTAINER_WORKDIR) -> str:
    """Where the commands run: `base` (the uploaded working directory) unless `working_dir` says
    otherwise. A relative path, or one under /workflow (dstack's repo mount), is inside `base`;
    any other absolute path is taken as is."""
    if not working_dir or working_dir in (".", repo_root):
        return base
    if working_dir.startswith(repo_root + "/"):
        return f"{base}/{working_dir[len(repo_root) + 1:]}"
    if working_dir.startswith("/"):
        return working_dir
    return f"{base}/{working_dir}"


BASH_PATHS = ("bash", "/bin/bash", "/usr/bin/bash")


def _shell_path(shell: str | None) -> str:
    """dstack's rule: a bare name is a program in /bin; default bash."""
    if not shell:
        return "bash"
    return shell if shell.startswith("/") else f"/bin/{shell}"


def render_container_script(
    *, environment: Mapping[str, str], commands: Sequence[str], image: str, gpus: bool,
    volume_paths: Sequence[str] = (), shell: str | None = None, working_dir: str | None = None,
    entrypoint: str | None = None, shm_gb: float | None = None, values: ShellValues | None = None,
    privileged: bool = False, user: str | None = None, start_dockerd: bool = False, prelude: Sequence[str] = (),
    staged_files: str | None = None,
) -> str:
    """A cloud node with `image`: the commands run inside the container (pulled at boot), on the
    host network (the nodes reach each other as on the host), with the working directory at
    /workflow, the task's env and DSTACK_* variables, the GPUs and the mounted volumes. The
    container takes the script's pid, so stopping the task stops it. With `entrypoint`, it
    replaces the shell and the commands are its arguments, as docker's entrypoint and command."""
    workdir = resolve_working_dir(CONTAINER_WORKDIR, working_dir)
    inside = {**environment, "DSTACK_WORKING_DIR": workdir}
    inside.pop("DSTACK_VENV_DIR", None)
    lines = ["#!/usr/bin/env bash", "# Written by dstack-iac: the task's commands, in its image.", "set -e"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in inside.items()]
    run = ["exec docker run --rm --init --network host --ipc host", "--name \"dstack-$DSTACK_RUN_NAME-$DSTACK_NODE_RANK\""]
    if gpus:
        run.append("--gpus all")
    if privileged:
        run.append("--privileged")
    if user:
        run.append(f"--user {shlex.quote(user)}")
    if shm_gb:
        run.append(f"--shm-size {int(shm_gb * 1024)}m")
    run += [f"-e {shlex.quote(key)}" for key in inside]
    run.append(f'-v "$(dirname "$0")/workdir:{CONTAINER_WORKDIR}" -w {shlex.quote(workdir)}')
    run += [f"-v {shlex.quote(path)}:{shlex.quote(path)}" for path in volume_paths]
    if staged_files:  # `files`, placed from inside the container (where their paths are)
        run.append(f"-v {shlex.quote(staged_files)}:{shlex.quote(staged_files)}:ro")
    program_path = _shell_path(shell) if shell else "bash"
    values = values or ShellValues(bash=program_path in BASH_PATHS)
    if entrypoint:
        program, *arguments = shlex.split(entrypoint)
        words = [*arguments, *(arg for command in commands for arg in values.arguments(command))]
        run.append(f"--entrypoint {shlex.quote(program)} {shlex.quote(image)} "
                   + " ".join(shlex.quote(a) for a in words))
    else:
        # dstack's Docker-in-Docker image starts its daemon with `start-dockerd`.
        body = "\n".join(["set -e", *prelude, *(["start-dockerd"] if start_dockerd else []),
                          *values.definitions(commands), *(values.substitute(c) for c in commands)])
        run.append(f"{shlex.quote(image)} {shlex.quote(program_path)} -c {shlex.quote(body)}")
    lines.append(" \\\n  ".join(run))
    return "\n".join(lines) + "\n"


def render_script(
    *, environment: Mapping[str, str], commands: Sequence[str], python: str, pip_cache_dir: str | None = None,
    wheelhouse: str | None = None, venv_seeds: str | None = None, shell: str | None = None,
    working_dir: str | None = None, entrypoint: str | None = None, values: ShellValues | None = None,
    prelude: Sequence[str] = (),
) -> str:
    """The commands on the node itself, in the run's virtualenv, from the working directory;
    `prelude` (placing files, the MPI hostfile) runs first."""
    workdir = resolve_working_dir(environment["DSTACK_WORKING_DIR"], working_dir)
    environment = {**environment, "DSTACK_WORKING_DIR": workdir}
    lines = ["#!/usr/bin/env bash", "# Written by dstack-iac: the task's commands on this node.", "set -e"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in environment.items()]
    if pip_cache_dir:
        lines.append(f"export PIP_CACHE_DIR={shlex.quote(pip_cache_dir)}")
    lines += [
        "export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1",
        *_make_venv(python, venv_seeds),
        'source "$DSTACK_VENV_DIR/bin/activate"',
    ]
    if wheelhouse:
        lines += [
            f"export DSTACK_WHEELHOUSE={shlex.quote(wheelhouse)}",
            'shims="$DSTACK_VENV_DIR/dstack-shims"',
            'if [ ! -x "$shims/pip" ]; then',
            '  mkdir -p "$shims"',
            f"  printf '%s' {shlex.quote(PIP_SHIM)} > \"$shims/pip\"",
            '  chmod +x "$shims/pip"; for name in pip3 "pip$(python -c \'import sys; print("%d.%d" % sys.version_info[:2])\')"; do ln -sf pip "$shims/$name"; done',
            "fi",
            'export PATH="$shims:$PATH"',
        ]
    lines += prelude
    # The line the CLI waits for (and does not show): the commands start now (startup_order).
    lines.append(f"echo {COMMANDS_STARTED}")
    lines.append('cd "$DSTACK_WORKING_DIR"')
    program = _shell_path(shell)
    values = values or ShellValues(bash=program in BASH_PATHS)
    if entrypoint:
        words = [*shlex.split(entrypoint), *(arg for command in commands for arg in values.arguments(command))]
        lines.append("exec " + " ".join(shlex.quote(word) for word in words))
        return "\n".join(lines) + "\n"
    body = "\n".join([*values.definitions(commands), *(values.substitute(c) for c in commands)])
    if program in BASH_PATHS:
        lines.append(body)
    else:
        lines.append(f"exec {shlex.quote(program)} -e -c {shlex.quote(body)} dstack-task")
    return "\n".join(lines) + "\n"


def group_node_addresses(plan: RunPlan, nodes_ips: Sequence[str]) -> dict[str, str]:
    """`groups[I].nodes[J].IP_ADDRESS` -> the address of that node, for every node of the run."""
    return {f"groups[{group.index}].nodes[{j}].IP_ADDRESS": nodes_ips[rank]
            for group in plan.groups for j, rank in enumerate(group.ranks) if rank < len(nodes_ips)}


def repo_dir_of(plan: RunPlan, working_dir: str) -> str | None:
    """Where the task's repo is on a node: its `path` against the working directory."""
    if not plan.configuration.repos:
        return None
    return place_path(plan.configuration.repos[0].path, working_dir)


def place_path(path: str, working_dir: str) -> str:
    """A node path of `files`/`repos` as the shell writes it: relative -> the working directory,
    `~` -> the user's home (expanded by the shell on the node)."""
    if path == "~" or path.startswith("~/"):
        return "$HOME" + path[1:]
    if path.startswith("/"):
        return posixpath.normpath(path)
    return posixpath.normpath(f"{working_dir.rstrip('/')}/{path}")


def _shell_word(path: str) -> str:
    """`place_path`'s result quoted for the shell, keeping a leading $HOME (or $DSTACK_...) live."""
    for variable in ("$HOME", "$DSTACK_WORKING_DIR"):
        if path.startswith(variable):
            return f'"{variable}"' + (shlex.quote(path[len(variable):]) if len(path) > len(variable) else "")
    return shlex.quote(path)


STAGED_FILES = "files"  # under the node's directory: where `files` are uploaded before being placed


def place_files_lines(plan: RunPlan, staged_root: str) -> list[str]:
    """Bash that puts each of `files` where it goes (replacing what is there, modes kept), after
    the repo; relative paths go under the working directory."""
    mappings = plan.configuration.files
    if not mappings:
        return []
    lines = [
        "__dstack_place() {",
        '  { rm -rf -- "$2" && mkdir -p -- "$(dirname -- "$2")" && cp -a -- "$1" "$2"; } 2>/dev/null && return',
        # A path only root may write (on a cloud machine): with sudo, when there is one.
        '  sudo -n sh -c \'rm -rf -- "$2" && mkdir -p -- "$(dirname -- "$2")" && cp -a -- "$1" "$2" && '
        'chown -R "$3" "$2"\' _ "$1" "$2" "$(id -u):$(id -g)" || { echo "files: cannot write $2" >&2; return 1; }',
        "}",
    ]
    for index, mapping in enumerate(mappings):
        source = f"{staged_root}/{index}/{Path(mapping.local_path).name}"
        target = place_path(mapping.path, "$DSTACK_WORKING_DIR")
        lines.append(f"__dstack_place {shlex.quote(source)} {_shell_word(target)}")
    return lines


def mpi_hostfile_lines(nodes_ips: Sequence[str], slots: Sequence[int]) -> list[str]:
    """dstack's DSTACK_MPI_HOSTFILE: one line per node, with its GPUs as slots."""
    entries = [f"{ip} slots={count}" if count else ip for ip, count in zip(nodes_ips, slots)]
    return [f"printf '%s\\n' {' '.join(shlex.quote(e) for e in entries)} > \"$DSTACK_MPI_HOSTFILE\""]


def node_script(plan: RunPlan, endpoint: NodeEndpoint, runtime: NodeRuntime, nodes_ips: Sequence[str],
                gpus_per_node: int, slots: Sequence[int] | None = None) -> str:
    """The script node `endpoint.rank` of `plan` runs: in the task's container when it has one.
    `gpus_per_node` is this node's; `slots` every node's GPUs (for the MPI hostfile)."""
    configuration = plan.configuration
    environment = node_environment(
        run_name=plan.run_name, rank=endpoint.rank, nodes_ips=nodes_ips, gpus_per_node=gpus_per_node,
        working_dir=endpoint.working_dir, venv_dir=f"{endpoint.node_dir}/venv", user_env=plan.env(),
    )
    environment["DSTACK_MPI_HOSTFILE"] = f"{endpoint.node_dir}/mpi_hostfile"
    repo_dir = repo_dir_of(plan, endpoint.working_dir)
    if repo_dir is not None:
        environment["DSTACK_REPO_DIR"] = repo_dir
    # `build` runs only with --build, restored from the build cache when its result is kept.
    commands = [*configuration.setup, *build_commands(plan, runtime), *configuration.commands_of(endpoint.rank)]
    bash = (_shell_path(configuration.shell) if configuration.shell else "bash") in BASH_PATHS
    values = ShellValues(plan.run_args, {k: v.get_secret_value() for k, v in plan.env_references.items()}, bash=bash,
                         others=group_node_addresses(plan, nodes_ips))
    prelude = [*mpi_hostfile_lines(nodes_ips, slots or [gpus_per_node] * len(nodes_ips)),
               *place_files_lines(plan, f"{endpoint.node_dir}/{STAGED_FILES}")]
    image = configuration.container_image
    if image:
        return render_container_script(
            environment=environment, commands=commands, image=image, gpus=gpus_per_node > 0,
            volume_paths=[m.path for m in plan.mounts_of(endpoint.rank)], shell=configuration.shell,
            working_dir=configuration.working_dir, entrypoint=configuration.entrypoint,
            shm_gb=configuration.group_of(endpoint.rank)[1].resources.shm_size, values=values,
            privileged=configuration.privileged or bool(configuration.docker), user=configuration.user,
            start_dockerd=bool(configuration.docker), prelude=prelude,
            staged_files=f"{endpoint.node_dir}/{STAGED_FILES}" if configuration.files else None)
    return render_script(environment=environment, commands=commands, python=plan.python,
                         pip_cache_dir=runtime.pip_cache_dir, wheelhouse=runtime.wheelhouse,
                         venv_seeds=runtime.venv_seeds, shell=configuration.shell,
                         working_dir=configuration.working_dir, entrypoint=configuration.entrypoint, values=values,
                         prelude=prelude)
