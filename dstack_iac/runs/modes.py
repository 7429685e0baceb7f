"""How `run`/`apply` runs a plan: attached (this process; Ctrl+C stops and tears down), detached
(`-d`: a supervisor process), or scheduled (`schedule:`: registered, a supervisor starts runs)."""

from __future__ import annotations

from collections.abc import Callable

from dstack_iac.errors import BadInput
from dstack_iac.model.backend import Backend
from dstack_iac.model.plan import RunPlan
from dstack_iac.runs.hooks import RunHook


def check_modes(*, detach: bool, reload: bool) -> None:
    """Flags that contradict each other, refused before anything is planned."""
    if reload and detach:
        raise BadInput("--reload syncs the working directory from this terminal while the run is attached: it cannot "
                       "go with -d (drop one of them)")


def check_plan(plan: RunPlan, *, reload: bool) -> None:
    if not reload:
        return
    if plan.configuration.schedule:
        raise BadInput("--reload needs an attached run, and a scheduled task runs in the background: drop --reload "
                       "(or the schedule)")
    # Reload is for an app you look at while editing it: without a port there is nothing to
    # look at, and a batch job would just restart under your feet.
    if not any(group.ports for group in plan.configuration.node_groups):
        raise BadInput("--reload is for an app the run serves, and the task has no ports: add `ports:` to the "
                       "configuration (or -p PORT), or drop --reload")


def run_hooks(plan: RunPlan, backend: Backend, *, reload: bool = False) -> list[RunHook]:
    """What goes along with an attached run: SSH access, the build cache's storage, reload."""
    from dstack_iac.runs.access import AccessHook
    from dstack_iac.runs.build_cache import build_hooks

    hooks: list[RunHook] = [AccessHook(), *build_hooks(plan, backend)]
    if reload:
        from dstack_iac.runs.reload import ReloadHook

        hooks.append(ReloadHook())
    return hooks


def start_in_background(plan: RunPlan, archive: bytes, say: Callable[[str], None]) -> int:
    """Hand the plan to a supervisor (a detached run, or a schedule); its pid."""
    from dstack_iac.runs.supervisor import DetachedRequest, start_supervisor

    name = plan.run_name
    schedule = plan.configuration.schedule
    if schedule:
        from dstack_iac.runs.schedule import describe_next

        pid = start_supervisor(DetachedRequest(plan=plan, archive=archive, schedule=list(schedule.cron)))
        say(f"Scheduled {name} ({'; '.join(schedule.cron)}, UTC): {describe_next(schedule.cron)} "
            f"(supervisor pid {pid}).\n"
            f"  dstack-iac ps                   its next start, and its runs\n"
            f"  dstack-iac attach {name}    follow the current run\n"
            f"  dstack-iac stop {name}      unregister it (and stop a run in progress)")
        return pid
    pid = start_supervisor(DetachedRequest(plan=plan, archive=archive))
    say(f"Run {name} goes on in the background (supervisor pid {pid}).\n"
        f"  dstack-iac attach {name}    its output and ports (--logs: from the start)\n"
        f"  dstack-iac ssh {name}       a shell on node 0\n"
        f"  dstack-iac stop {name}      stop it and tear it down")
    return pid
