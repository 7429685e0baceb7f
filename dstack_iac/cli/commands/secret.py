"""`secret set|get|list|delete`: the values tasks refer to as `${{ secrets.NAME }}`."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from dstack_iac.cli.options import AsJson, Yes, confirm
from dstack_iac.cli.output import console, note, print_json
from dstack_iac.errors import BadInput

secret_app = typer.Typer(help="Secrets for ${{ secrets.NAME }} in env and registry_auth, kept encrypted.",
                         no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="The secret's name, as in ${{ secrets.NAME }}.")]


def _store():
    from dstack_iac.paths import require_usable_state_dir
    from dstack_iac.state.secrets import SecretStore

    require_usable_state_dir()
    return SecretStore()


def _read_value(name: str) -> str:
    """From a hidden prompt (asked twice) on a terminal, else the whole of stdin."""
    if sys.stdin.isatty():
        value = typer.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    if not value:
        raise BadInput(f"no value for {name}: type it at the prompt, pipe it in, or pass --value")
    return value


@secret_app.command("set")
def set_secret(
    name: Name,
    value: Annotated[Optional[str], typer.Option("--value", help="The value (it stays in your shell's history and "
                                                                 "the process list: prefer the prompt or stdin).")] = None,
) -> None:
    """Store a secret (from a prompt, stdin or --value), encrypted with the state dir's passphrase."""
    from dstack_iac.state.secrets import check_name

    check_name(name)
    store = _store()
    store.set(name, value if value is not None else _read_value(name))
    note(f"Secret {name} is set")


@secret_app.command("get")
def get_secret(name: Name) -> None:
    """Print a secret's value."""
    console.print(_store().get(name), markup=False, highlight=False, soft_wrap=True)


@secret_app.command("list")
def list_secrets(as_json: AsJson = False) -> None:
    """List the secrets' names (never their values)."""
    names = _store().names()
    if as_json:
        print_json({"secrets": names})
    elif not names:
        note("No secrets. Set one with: dstack-iac secret set NAME")
    else:
        for name in names:
            console.print(name, markup=False, highlight=False)


@secret_app.command("delete")
def delete_secret(name: Name, yes: Yes = False) -> None:
    """Delete a secret."""
    store = _store()
    if name not in store.names():
        raise BadInput(f"no secret named {name!r}")
    if not confirm(f"Delete secret {name}?", yes):
        raise typer.Exit(1)
    store.delete(name)
    note(f"Secret {name} is deleted")
