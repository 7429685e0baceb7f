"""Arbitrary YAML never crashes validation with a traceback: it validates or raises ConfigError."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dstack_iac.config.errors import ConfigError
from dstack_iac.config.loader import load_task

FIELDS = ["type", "name", "image", "python", "commands", "env", "ports", "nodes", "resources", "volumes",
          "retry", "max_duration", "max_price", "spot_policy", "backends", "registry_auth", "gpu", "cpu", "memory",
          "disk", "path", "name", "on_events", "duration"]
scalars = st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False, width=32) | st.text(max_size=12) | st.sampled_from(
    ["task", "A100:2", "24GB", "1..2", "8GB..", "3h", "off", "3000:7860", "*:80", "a:/b", "/x:/y", "${{ run.args }}"]
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(FIELDS), values, max_size=8).map(lambda d: {"type": "task", **d})


def _check(tmp: Path, text: str) -> None:
    path = tmp / "fuzz.dstack.yml"
    path.write_text(text)
    try:
        load_task(tmp, path, caller_env={}, home=tmp)
    except ConfigError as exc:
        assert exc.issues and all(issue.message for issue in exc.issues)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(documents)
def test_structured_documents_never_crash(tmp_path, document):
    _check(tmp_path, yaml.safe_dump(document))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.text(alphabet=st.sampled_from(list("type: task\n-[]{}'\"&*!|>%@`#,?$. 0123456789aA")), max_size=120))
def test_raw_text_never_crashes(tmp_path, text):
    _check(tmp_path, text)
