"""Valid forms of the task fields dstack users bring, normalised field by field: one row per form
seen in dstack's docs and examples (our own files, written for these forms). The invalid forms
of the same fields, with line, path and message, are rows of tests/config/invalid_cases.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack_iac.config.loader import load_task

T = "type: task\n"
C = "commands: [echo hi]\n"
ENV = {"HF_TOKEN": "hf-value", "NGC_API_KEY": "ngc-value", "HOME": "/home/someone"}

# (id, YAML after `type: task`, what to read from the configuration, the normalised value)
CASES = [
    ("python-float", C + "python: 3.10\n", lambda c: c.python, "3.10"),
    ("python-string", C + "python: '3.12'\n", lambda c: c.python, "3.12"),
    ("commands-folded-plain", "commands:\n  - accelerate launch\n    --num_processes=2\n", lambda c: c.commands,
     ["accelerate launch --num_processes=2"]),
    ("commands-literal-block", "commands:\n  - |\n    if true; then\n      echo yes\n    fi\n", lambda c: c.commands,
     ["if true; then\n  echo yes\nfi\n"]),
    ("env-list-mixed", C + "env:\n  - HF_TOKEN\n  - NCCL_DEBUG=INFO\n  - URL=https://a.b/c?d=e\n",
     lambda c: c.env, {"HF_TOKEN": "hf-value", "NCCL_DEBUG": "INFO", "URL": "https://a.b/c?d=e"}),
    ("env-quotes-literal", C + "env:\n  - GPU_ARCHS=\"gfx90a;gfx942\"\n", lambda c: c.env["GPU_ARCHS"],
     '"gfx90a;gfx942"'),
    ("env-list-unindented", C + "env:\n- A=1\n", lambda c: c.env, {"A": "1"}),
    ("env-mapping-number", C + "env:\n  WORKERS: 4\n", lambda c: c.env, {"WORKERS": "4"}),
    ("env-secret-kept", C + "env:\n  - HF_TOKEN=${{ secrets.huggingface_token }}\n", lambda c: c.env["HF_TOKEN"],
     "${{ secrets.huggingface_token }}"),
    ("image-only-no-commands", "image: nvcr.io/nim/meta/llama:latest\nports: [8000]\n",
     lambda c: (c.commands, c.image), ([], "nvcr.io/nim/meta/llama:latest")),
    ("repos-dot", C + "repos:\n  - .\n", lambda c: (c.repos[0].local_path, c.repos[0].path), ("{dir}", ".")),
    ("repos-parent-with-path", C + "repos:\n  - ..:/my-repo\n", lambda c: (c.repos[0].local_path, c.repos[0].path),
     ("{parent}", "/my-repo")),
    ("repos-url", C + "repos:\n  - https://github.com/org/project\n",
     lambda c: (c.repos[0].url, c.repos[0].path), ("https://github.com/org/project", ".")),
    ("repos-url-with-path", C + "repos:\n  - https://github.com/org/project:project\n",
     lambda c: (c.repos[0].url, c.repos[0].path), ("https://github.com/org/project", "project")),
    ("repos-ssh-url", C + "repos:\n  - git@github.com:org/project.git\n", lambda c: c.repos[0].url,
     "git@github.com:org/project.git"),
    ("repos-mapping", C + "repos:\n  - url: https://github.com/org/project\n    branch: dev\n    hash: 1a2b3c\n"
                          "    path: src\n    if_exists: skip\n",
     lambda c: (c.repos[0].branch, c.repos[0].hash, c.repos[0].path, c.repos[0].if_exists), ("dev", "1a2b3c", "src",
                                                                                           "skip")),
    ("repos-url-credentials-split", C + "repos:\n  - https://me:tok3n@example.com/org/project.git\n",
     lambda c: (c.repos[0].url, c.repos[0].url_username, c.repos[0].url_password.get_secret_value()),
     ("https://example.com/org/project.git", "me", "tok3n")),
    ("files-same-path", C + "files:\n  - data.csv\n", lambda c: (c.files[0].local_path, c.files[0].path),
     ("{dir}/data.csv", "data.csv")),
    ("files-to-absolute", C + "files:\n  - data.csv:/root/data.csv\n", lambda c: c.files[0].path, "/root/data.csv"),
    ("files-to-home", C + "files:\n  - local_path: data.csv\n    path: ~/data.csv\n", lambda c: c.files[0].path,
     "~/data.csv"),
    ("files-dir", C + "files:\n  - .:examples\n", lambda c: (c.files[0].local_path, c.files[0].path),
     ("{dir}", "examples")),
    ("volumes-instance", C + "volumes:\n  - /checkpoints:/checkpoints\n", lambda c: c.volumes[0].instance_path,
     "/checkpoints"),
    ("volumes-node-rank", C + "volumes:\n  - name: data-${{ dstack.node_rank }}\n    path: /data\n",
     lambda c: c.volumes[0].path, "/data"),
    ("nodes-startup-stop", C + "nodes: 2\nstartup_order: workers-first\nstop_criteria: master-done\n",
     lambda c: (c.total_nodes, c.startup_order.value, c.stop_criteria.value), (2, "workers-first", "master-done")),
    ("startup-defaults", C, lambda c: (c.startup_order.value, c.stop_criteria.value, c.stop_duration),
     ("any", "all-done", 300)),
    ("groups", "groups:\n  - name: head\n    commands: [a]\n  - name: workers\n    nodes: 2\n    commands: [b]\n"
               "    resources: {gpu: 24GB}\n",
     lambda c: ([g.name for g in c.node_groups], c.total_nodes, c.commands_of(0), c.commands_of(2),
                str(c.group_of(1)[1].resources.gpu)), (["head", "workers"], 3, ["a"], ["b"], "24GB:1")),
    ("nvcc", C + "python: 3.12\nnvcc: true\n", lambda c: (c.nvcc, c.container_image),
     (True, "dstackai/base:0.10-devel-ubuntu22.04")),
    ("docker", C + "docker: true\n", lambda c: (c.docker, c.container_image), (True, "dstackai/dind")),
    ("privileged-dind-image", C + "image: dstackai/dind\nprivileged: true\n", lambda c: (c.privileged, c.image),
     (True, "dstackai/dind")),
    ("user-with-group", C + "image: ubuntu\nuser: 1000:1000\n", lambda c: c.user, "1000:1000"),
    ("entrypoint", C + "image: ubuntu\nentrypoint: bash -c\n", lambda c: c.entrypoint, "bash -c"),
    ("shell-bash", C + "image: ubuntu\nshell: bash\n", lambda c: c.shell, "bash"),
    ("single-branch", C + "single_branch: false\n", lambda c: c.single_branch, False),
    ("priority", C + "priority: 50\n", lambda c: c.priority, 50),
    ("utilization-policy", C + "utilization_policy:\n  min_gpu_utilization: 10\n  time_window: 1h\n",
     lambda c: (c.utilization_policy.min_gpu_utilization, c.utilization_policy.time_window), (10, 3600)),
    ("stop-duration-off", C + "stop_duration: off\n", lambda c: c.stop_duration, None),
    ("stop-duration-seconds", C + "stop_duration: 90\n", lambda c: c.stop_duration, 90),
    ("max-duration", C + "max_duration: 2h\n", lambda c: c.max_duration, 7200),
    ("retry-mapping", C + "retry:\n  on_events: [no-capacity, error, interruption]\n  duration: 48h\n",
     lambda c: ([e.value for e in c.retry.on_events], c.retry.duration),
     (["no-capacity", "error", "interruption"], 48 * 3600)),
    ("schedule-one", C + "schedule:\n  cron: \"15 23 * * *\"\n", lambda c: c.schedule.cron, ["15 23 * * *"]),
    ("schedule-several", C + "schedule:\n  cron: [\"0 8 * * 1-5\", \"0 12 * * *\"]\n", lambda c: c.schedule.cron,
     ["0 8 * * 1-5", "0 12 * * *"]),
    ("idle-duration-off", C + "idle_duration: off\n", lambda c: c.idle_duration, -1),
    ("creation-policy", C + "creation_policy: reuse\n", lambda c: c.creation_policy.value, "reuse"),
    ("fleets", C + "fleets: [my-fleet]\n", lambda c: [f.name for f in c.fleets], ["my-fleet"]),
    ("tags", C + "tags:\n  team: nlp\n  cost-center: '42'\n", lambda c: c.tags, {"team": "nlp", "cost-center": "42"}),
    ("reservation", C + "reservation: cr-0123\n", lambda c: c.reservation, "cr-0123"),
    ("spot-policy", C + "spot_policy: auto\n", lambda c: c.spot_policy.value, "auto"),
    ("backends-dstack-names", C + "backends: [\"aws\", \"azure\", \"datacrunch\", \"tensordock\"]\n",
     lambda c: c.backends, ["aws", "azure", "datacrunch", "tensordock"]),
    ("registry-auth-literal-dollar", C + "image: nvcr.io/nvidia/pytorch:25.01-py3\nregistry_auth:\n"
                                         "  username: $oauthtoken\n  password: ${{ env.NGC_API_KEY }}\n",
     lambda c: (c.registry_auth.username, c.registry_auth.password.get_secret_value()), ("$oauthtoken", "ngc-value")),
    ("registry-auth-secret", C + "image: nvcr.io/x:1\nregistry_auth:\n  username: $oauthtoken\n"
                                 "  password: ${{ secrets.ngc_key }}\n",
     lambda c: c.registry_auth.password.get_secret_value(), "${{ secrets.ngc_key }}"),
    ("working-dir-relative", C + "working_dir: examples/misc\n", lambda c: c.working_dir, "examples/misc"),
    ("setup-deprecated", C + "setup: [pip install -r requirements.txt]\n", lambda c: c.setup,
     ["pip install -r requirements.txt"]),
    ("gpu-vendor-any-order", C + "resources:\n  gpu: nvidia:8:80GB\n", lambda c: str(c.resources.gpu), "nvidia:80GB:8"),
    ("gpu-tenstorrent", C + "resources:\n  gpu: n150:1\n", lambda c: c.resources.gpu.names, ["n150"]),
    ("gpu-mapping", C + "resources:\n  gpu:\n    memory: 24GB..\n    count: 1..\n",
     lambda c: str(c.resources.gpu), "24GB..:1.."),
    ("shm-size", C + "resources:\n  shm_size: 16GB\n", lambda c: c.resources.shm_size, 16.0),
]


def _load(tmp_path: Path, body: str):
    (tmp_path / "data.csv").write_text("a\n")
    path = tmp_path / "t.dstack.yml"
    path.write_text(T + body)
    return load_task(tmp_path, path, caller_env=ENV, home=tmp_path / "no-profiles")


def _placeholders(value, tmp_path: Path):
    """`{dir}` and `{parent}`: the configuration's directory and its parent, as resolved."""
    if isinstance(value, str):
        return value.replace("{dir}", str(tmp_path)).replace("{parent}", str(tmp_path.parent))
    if isinstance(value, (list, tuple)):
        return type(value)(_placeholders(item, tmp_path) for item in value)
    return value


def test_the_table_covers_the_forms():
    assert len(CASES) >= 55 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id, body, read, expected", CASES, ids=[case[0] for case in CASES])
def test_a_valid_form_is_normalised(tmp_path, case_id, body, read, expected):
    task = _load(tmp_path, body)
    assert read(task.configuration) == _placeholders(expected, tmp_path)


def test_deprecated_fields_are_accepted_with_a_warning(tmp_path):
    task = _load(tmp_path, C + "setup: [echo setup]\nhome_dir: /root\n")
    assert any("setup" in warning and "deprecated" in warning for warning in task.warnings)
    assert any("home_dir" in warning for warning in task.warnings)


def test_a_field_is_located_for_messages(tmp_path):
    task = _load(tmp_path, C + "privileged: true\n")
    assert task.where("privileged").endswith("t.dstack.yml:3:1")
