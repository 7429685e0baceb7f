"""A field a backend cannot honour is refused at planning, before anything is created: the
message names the file, line and field, the backend, why, and what would work."""

from __future__ import annotations

import pytest

from dstack_iac.backends.registry import get_backend
from dstack_iac.config.loader import load_task
from dstack_iac.errors import BadInput, ExitStatus
from dstack_iac.plan.planner import plan_run

REFUSED_ON_LOCAL = [
    ("image: ubuntu", "image", "no container runtime", "remove image (use python)"),
    ("docker: true", "docker", "none can run Docker inside", "choose a cloud backend"),
    ("nvcc: true", "nvcc", "no image with the CUDA toolkit", "a CUDA toolkit installed on this machine"),
    ("privileged: true", "privileged", "no container that could be privileged", "choose a cloud backend"),
    ("user: ubuntu", "user", "the commands run as you", "choose a cloud backend"),
    ("reservation: cr-1", "reservation", "no capacity reservations", "choose a cloud backend"),
    ("fleets: [lab]", "fleets", "existing ones are an SSH fleet's hosts", "backends: [ssh]"),
    ("creation_policy: reuse", "creation_policy", "existing ones are an SSH fleet's hosts", "backends: [ssh]"),
    ("dstack: true", "dstack", "dstack-iac has no server", "remove dstack: true"),
    ("backend_options: [{type: local}]", "backend_options", "dstack-iac has no options for it", "remove"),
    ("idle_duration: 1h", "idle_duration", "nothing waits idle", "set it to 0"),
]


@pytest.mark.parametrize("line, field, why, instead", REFUSED_ON_LOCAL, ids=[case[1] for case in REFUSED_ON_LOCAL])
def test_local_refuses_what_it_cannot_honour(tmp_path, line, field, why, instead):
    path = tmp_path / "t.dstack.yml"
    path.write_text(f"type: task\ncommands: [echo hi]\n{line}\n")
    task = load_task(tmp_path, path, caller_env={}, home=tmp_path)
    with pytest.raises(BadInput) as refused:
        plan_run(task, "refused", [get_backend("local")], {})
    text = refused.value.render()
    assert text.startswith(f"{path}:3:1: {field}: ") and why in text and instead in text
    assert refused.value.exit_status == ExitStatus.BAD_INPUT


def test_what_local_honours_plans(tmp_path):
    path = tmp_path / "t.dstack.yml"
    path.write_text("type: task\ncommands: [echo hi]\ntags: {team: nlp}\nidle_duration: 0\nstop_duration: off\n"
                    "single_branch: false\npriority: 7\n")
    task = load_task(tmp_path, path, caller_env={}, home=tmp_path)
    plan = plan_run(task, "honoured", [get_backend("local")], {})
    assert plan.backend == "local" and plan.configuration.priority == 7


def test_a_dstack_backend_we_do_not_provision_is_skipped_or_refused(tmp_path):
    from dstack_iac.runs.planning import candidate_backends

    path = tmp_path / "t.dstack.yml"
    path.write_text("type: task\ncommands: [echo hi]\nbackends: [crusoe, local]\n")
    notes: list[str] = []
    backends = candidate_backends(load_task(tmp_path, path, caller_env={}, home=tmp_path), notes.append)
    assert [backend.name for backend in backends] == ["local"]
    assert notes == ["Skipping backends: crusoe is a dstack backend dstack-iac does not provision; implemented: "
                     "ssh, local, aws, gcp"]
    path.write_text("type: task\ncommands: [echo hi]\nbackends: [crusoe]\n")
    with pytest.raises(BadInput, match="^crusoe is a dstack backend dstack-iac does not provision"):
        candidate_backends(load_task(tmp_path, path, caller_env={}, home=tmp_path))
