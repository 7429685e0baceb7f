"""`ssh`: a shell (or a command) on a node of an active run, as the run's user, in its working
directory with its environment; the host key is pinned (the run's known_hosts, strict)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dstack_iac.cli.options import Yes
from dstack_iac.cli.output import error_console, note
from dstack_iac.errors import BadInput, EnvironmentProblem

SSH_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def _split(words: list[str], argv: list[str]) -> tuple[Optional[int], list[str]]:
    """(node, command) from the words after RUN: what follows the first `--` is the command (Click
    drops the `--` itself, so the command line tells where it was); before it, or without it, a
    first word that is a number is the node's rank."""
    if "--" in argv:
        command = argv[argv.index("--") + 1:]
        before = words[:len(words) - len(command)] if words[len(words) - len(command):] == command else words
    elif words and words[0].isdigit():
        before, command = words[:1], words[1:]
    else:
        before, command = [], words
    if len(before) > 1 or (before and not before[0].isdigit()):
        raise BadInput(f"expected at most a node's rank before `--` (got {' '.join(before)}): "
                       "dstack-iac ssh RUN [NODE] [-- COMMAND]")
    return (int(before[0]) if before else None), command


def ssh(
    ctx: typer.Context,
    run_name: Annotated[Optional[str], typer.Argument(metavar="RUN", help="The run's name (see `dstack-iac ps`).")] = None,
    rest: Annotated[Optional[list[str]], typer.Argument(metavar="[NODE] [-- COMMAND...]",
                                                        help="The node's rank (default 0), then a command.")] = None,
    setup: Annotated[bool, typer.Option("--setup", help="Add one Include line for dstack-iac's ssh config to "
                                                        "~/.ssh/config (so `ssh RUN` and VS Code work).")] = False,
    yes: Yes = False,
) -> None:
    """Open a shell on a node of a run (or run COMMAND there), in its working directory."""
    from dstack_iac.runs import access

    if setup:
        _setup(yes)
        return
    if not run_name:
        raise BadInput("give the run's name: dstack-iac ssh RUN [NODE] [-- COMMAND]")
    node, command = _split(list(rest or []) + list(ctx.args), sys.argv)
    reachable = access.load_access(run_name)
    if reachable is None:
        from dstack_iac.state import runs

        record = runs.load(run_name)
        what = "no run" if record is None else f"{run_name} is {record.effective_status.value}, with no node ready"
        raise BadInput(f"{what} named {run_name!r} to reach" if record is None else f"{what} to reach yet",
                       hint="(see `dstack-iac ps`)")
    endpoint = reachable.node(node or 0)
    client = shutil.which("ssh")
    if client is None:
        raise EnvironmentProblem("the OpenSSH client (ssh) is not installed", hint="apt-get install openssh-client")
    arguments = [client, "-F", str(access.ssh_config_path())]
    if not command and sys.stdin.isatty():
        arguments.append("-t")
    arguments += [access.host_alias(run_name, endpoint.rank), access.remote_command(endpoint.node_dir, command)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(client, arguments)


def _setup(yes: bool) -> None:
    from dstack_iac.runs import access

    user_config = Path.home() / ".ssh" / "config"
    line = access.include_line()
    if access.has_include(user_config):
        note(f"{user_config} already includes dstack-iac's ssh config ({access.ssh_config_path()}).")
        return
    interactive = sys.stdin.isatty()
    if not yes and not interactive:
        error_console.print(f"Add this line at the top of {user_config} (or rerun with -y):\n  {line}", markup=False)
        return
    if not yes and not typer.confirm(f"Add `{line}` at the top of {user_config}?", default=True):
        return
    access.add_include(user_config)
    error_console.print(f"Added to {user_config}: {line}\nWhile a run is active, `ssh RUN` (or RUN-RANK) reaches "
                        "its nodes, and so does VS Code's Remote-SSH.", style="green", markup=False)
