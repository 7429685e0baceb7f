"""`preview`: the infrastructure a run would create (a real Pulumi preview); nothing is created.
`--json` prints it as a reviewable plan document, `--save-plan FILE` saves that document for
`run --plan FILE`, and `--policy-pack DIR` has policy packs judge it (infra/reviewed_plan.py,
infra/policy.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from dstack_iac.cli.commands.planning import load_and_plan, nothing_provisioned
from dstack_iac.cli.options import AsJson, PolicyPackConfigs, PolicyPacks, RepoDir, task_options
from dstack_iac.cli.output import console, note, print_json
from dstack_iac.cli.tables import planned_changes_table

if TYPE_CHECKING:
    from dstack_iac.config.loader import Overrides


@task_options
def preview(
    ctx: typer.Context,
    repo_dir: RepoDir = Path("."),
    as_json: AsJson = False,
    save_plan: Annotated[Optional[Path], typer.Option(
        "--save-plan", metavar="FILE",
        help="Save the plan (the offer, every resource, the policies' findings) for `run --plan FILE`.")] = None,
    policy_pack: PolicyPacks = [],
    policy_pack_config: PolicyPackConfigs = [],
    *,
    file: Optional[Path],
    overrides: Overrides,
    run_args: list[str],
) -> None:
    """Show the infrastructure a run would create (a real Pulumi preview); nothing is created."""
    from dstack_iac.runs.review import Guardrails, review_run

    with nothing_provisioned():
        guardrails = Guardrails.from_flags(policy_pack, policy_pack_config)
    # A saved plan fixes the run's name (the run applies exactly it), so it gets a real one.
    _task, plan, backend = load_and_plan(repo_dir, file, overrides, run_args,
                                         default_name=None if save_plan else "preview", show_plan=not as_json)
    with nothing_provisioned():
        review = review_run(plan, backend, guardrails, on_finding=lambda line: note(f"  {line}"),
                            raise_violation=False)
    if as_json:
        print_json(review.document)
    else:
        console.print(planned_changes_table(review.progress.planned, backend.hidden_inputs), crop=False)
        console.print(f"{len(review.progress.planned)} to create; nothing was created.")
    if review.violation is not None:
        review.violation.hint = f"{review.violation.hint}\n(nothing was provisioned)".strip()
        raise review.violation
    if save_plan is not None:
        from dstack_iac.infra.reviewed_plan import save_plan as write_plan

        write_plan(review.document, save_plan)
        note(f"Plan saved to {save_plan}: apply exactly it with `dstack-iac run --plan {save_plan}`.")
