"""The `dstack-iac` command line: the commands, and the one place errors become exit codes.

Every failure a user can meet is a `DstackIacError`: printed as one message, ended with its exit
status (errors.py). Anything else is a bug: said so, with the traceback only under `--debug` or
`DSTACK_IAC_DEBUG=1`.
"""

from __future__ import annotations

import os
import traceback
from typing import Annotated

import typer
from typer.core import TyperGroup

from dstack_iac.cli.commands import attach, doctor, gc, logs, offers, preview, ps, run, schema, ssh, stop, validate
from dstack_iac.cli.commands.ssh import SSH_CONTEXT
from dstack_iac.cli.commands.secret import secret_app
from dstack_iac.cli.commands.volume import volume_app
from dstack_iac.cli.options import RUN_CONTEXT
from dstack_iac.cli.output import print_error
from dstack_iac.errors import DstackIacError, ExitStatus

DEBUG_ENV = "DSTACK_IAC_DEBUG"

class _HandledGroup(TyperGroup):
    """The root group: every command runs inside `invoke`, so this is where errors end."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None
        except DstackIacError as exc:
            if _debugging():
                traceback.print_exc()
            print_error(exc.render())
            raise typer.Exit(int(exc.exit_status)) from None
        except Exception as exc:  # noqa: BLE001 - the one place a bug is turned into a message
            if _debugging():
                traceback.print_exc()
            print_error(f"unexpected error ({type(exc).__name__}: {exc}); this is a bug: rerun with --debug and "
                        "report the traceback")
            raise typer.Exit(int(ExitStatus.FAILED)) from None


app = typer.Typer(
    name="dstack-iac",
    cls=_HandledGroup,
    help="Run dstack tasks as ephemeral Pulumi stacks: plan, provision, run over SSH, tear down.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")] = False) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


for command in (run.run, preview.preview, validate.validate, offers.offers):
    app.command(context_settings=RUN_CONTEXT)(command)
for command in (ps.ps, logs.logs, stop.stop, gc.gc, doctor.doctor, schema.schema):
    app.command()(command)
# dstack's own verbs: `apply` is `run` (same flags, plan and confirmation); attach, ssh.
app.command("apply", context_settings=RUN_CONTEXT,
            help="Apply a task, as dstack does: the same as `run` (-d runs it in the background).")(run.run)
app.command()(attach.attach)
app.command(context_settings=SSH_CONTEXT)(ssh.ssh)
app.add_typer(volume_app, name="volume")
app.add_typer(secret_app, name="secret")


def _mount_backend_commands() -> None:
    """Command groups that backends bring (e.g. `fleet`, with the ssh backend)."""
    from dstack_iac.backends.registry import command_groups

    for name, group in command_groups():
        app.add_typer(group, name=name)


_mount_backend_commands()


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")


def main() -> None:
    app()
