"""The override flags shared by `run`, `preview`, `validate` and `offers`, declared once.

`task_options` appends them to a command's signature (Typer reads `__signature__`) and hands the
command one `Overrides` object plus the run arguments: every option Typer does not know.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from dstack_iac.config.loader import Overrides


RUN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}

_SHARED = {
    "file": (Annotated[Optional[Path], typer.Option("-f", "--file", help="Configuration file (*.dstack.yml).")], None),
    "name": (Annotated[Optional[str], typer.Option("-n", "--name", help="Run name.")], None),
    "env": (Annotated[list[str], typer.Option("-e", "--env", help="KEY=VALUE, or KEY from your environment.")], []),
    "port": (Annotated[list[str], typer.Option("-p", "--port", help="Port mapping: 8080, 3000:7860 or *:8080.")], []),
    "gpu": (Annotated[Optional[str], typer.Option("--gpu", help="GPU spec, e.g. 24GB, A100:2, 1..2.")], None),
    "cpu": (Annotated[Optional[str], typer.Option("--cpu", help="CPU count or range, e.g. 8, 2..8, arm:8..")], None),
    "memory": (Annotated[Optional[str], typer.Option("--memory", help="Memory, e.g. 16GB or 8GB..")], None),
    "disk": (Annotated[Optional[str], typer.Option("--disk", help="Disk size, e.g. 100GB..")], None),
    "backend": (Annotated[list[str], typer.Option("-b", "--backend", help="Backend: local, aws or gcp.")], []),
    "region": (Annotated[list[str], typer.Option("-r", "--region", help="Region to consider.")], []),
    "instance_type": (Annotated[list[str], typer.Option("--instance-type", help="Instance type to consider.")], []),
    "spot": (Annotated[bool, typer.Option("--spot", help="Spot instances only.")], False),
    "on_demand": (Annotated[bool, typer.Option("--on-demand", help="On-demand instances only.")], False),
    "spot_auto": (Annotated[bool, typer.Option("--spot-auto", help="Spot when cheaper, else on-demand.")], False),
    "max_price": (Annotated[Optional[float], typer.Option("--max-price", help="Maximum $/hour per node.")], None),
    "max_duration": (Annotated[Optional[str], typer.Option("--max-duration", help="e.g. 3h, or off.")], None),
    "retry": (Annotated[bool, typer.Option("--retry", help="Retry on no capacity, interruption or error.")], False),
    "no_retry": (Annotated[bool, typer.Option("--no-retry", help="Never retry.")], False),
    "retry_duration": (Annotated[Optional[str], typer.Option("--retry-duration", "--retry-limit",
                                                             help="How long to keep retrying, e.g. 3h.")], None),
    "build": (Annotated[bool, typer.Option("--build", help="Run the configuration's build commands first.")], False),
    "profile": (Annotated[Optional[str], typer.Option("--profile", help="Profile from .dstack/profiles.yml.")], None),
    "no_profile": (Annotated[bool, typer.Option("--no-profile", help="Ignore profiles.")], False),
}


def _overrides(values: dict) -> Overrides:
    from dstack_iac.config.loader import Overrides  # the models load when a command needs them, not at start

    chosen = [flag for flag, key in (("spot", "spot"), ("on-demand", "on_demand"), ("auto", "spot_auto")) if values[key]]
    if len(chosen) > 1:
        raise typer.BadParameter("choose one of --spot, --on-demand, --spot-auto")
    if values["retry"] and values["no_retry"]:
        raise typer.BadParameter("--retry and --no-retry contradict each other")
    return Overrides(
        name=values["name"], env=values["env"], ports=values["port"], gpu=values["gpu"], cpu=values["cpu"],
        memory=values["memory"], disk=values["disk"], backends=values["backend"], regions=values["region"],
        instance_types=values["instance_type"], spot_policy=chosen[0] if chosen else None,
        max_price=values["max_price"], max_duration=values["max_duration"],
        retry=False if values["no_retry"] else (True if values["retry"] else None),
        retry_duration=values["retry_duration"], build=values["build"], profile=values["profile"],
        no_profile=values["no_profile"],
    )


def task_options(command):
    """Give `command(ctx, ..., file, overrides, run_args)` the shared flags."""
    # `overrides: Overrides` names a type the command's module imports only when it runs (the
    # models load then, not at every start of the CLI): a stand-in lets the signature evaluate.
    own = [p for p in inspect.signature(command, eval_str=True, locals={"Overrides": object}).parameters.values()
           if p.name not in ("file", "overrides", "run_args")]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
        for name, (annotation, default) in _SHARED.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs):
        values = {name: kwargs.pop(name) for name in _SHARED}
        ctx: typer.Context = kwargs["ctx"]
        run_args = list(ctx.args)
        repo_dir = kwargs.get("repo_dir")
        if repo_dir is not None and str(repo_dir).startswith("-"):
            # Unknown options are positional to Click: the first one lands in DIR when DIR is omitted.
            run_args.insert(0, str(repo_dir))
            kwargs["repo_dir"] = Path(".")
        if repo_dir is not None and not kwargs["repo_dir"].is_dir():
            raise typer.BadParameter(f"{kwargs['repo_dir']} is not a directory", param_hint="DIR")
        return command(**kwargs, file=values["file"], overrides=_overrides(values), run_args=run_args)

    wrapper.__signature__ = inspect.Signature(own + shared)
    # Typer reads the annotations too: the evaluated ones (the command's own name a lazy type).
    wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in own + shared}
    return wrapper


# Options several commands take, declared once.
Yes = Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
RepoDir = Annotated[Path, typer.Argument(help="Working directory uploaded to the nodes.", show_default=True)]
RunName = Annotated[str, typer.Argument(metavar="RUN", help="The run's name (see `dstack-iac ps`).")]
ConfigurationFile = Annotated[Optional[Path], typer.Option("-f", "--file", help="Configuration file (*.dstack.yml).")]


def confirm(question: str, yes: bool, default: bool = True) -> bool:
    """Ask on a terminal, unless `-y`; without a terminal, the answer is yes."""
    import sys

    if yes or not sys.stdin.isatty():
        return True
    return typer.confirm(question, default=default)

# Policy guardrails (`run`, `preview`): see infra/policy.py.
PolicyPacks = Annotated[list[Path], typer.Option(
    "--policy-pack", metavar="DIR",
    help="A Pulumi policy pack judging the run's resources before anything is created (repeatable; "
         "$DSTACK_IAC_POLICY_PACKS adds a team's own).")]
PolicyPackConfigs = Annotated[list[Path], typer.Option(
    "--policy-pack-config", metavar="FILE",
    help="Policy configuration (JSON) of the --policy-pack in the same position (one per pack).")]
