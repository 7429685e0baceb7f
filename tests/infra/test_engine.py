"""The Pulumi engine is real: an inline Automation API program with a Python dynamic provider
creates and deletes a real file on a file backend in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi.dynamic
from pulumi import automation as auto

from dstack_iac.infra import engine


class FileProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props):
        path = Path(props["path"])
        path.write_text(props["content"])
        return pulumi.dynamic.CreateResult(id_=str(path), outs=props)

    def delete(self, id_, props):
        Path(id_).unlink(missing_ok=True)


class TouchedFile(pulumi.dynamic.Resource):
    def __init__(self, name, path, content, opts=None):
        super().__init__(FileProvider(), name, {"path": path, "content": content}, opts)


def test_preview_up_destroy_on_file_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("DSTACK_IAC_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    # The engine runs the provider in its own Python process, which must import this module.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    target = tmp_path / "created-by-pulumi.txt"

    def program():
        TouchedFile("marker", str(target), "hello from the engine")

    stack = auto.create_stack(
        "engine-test", project_name="engine-test", program=program,
        opts=engine.workspace_options(project="engine-test"),
    )
    events = []
    preview = stack.preview(on_event=events.append)
    assert preview.change_summary == {"create": 2}  # the stack itself and the file
    creates = [e.resource_pre_event.metadata for e in events
               if e.resource_pre_event and e.resource_pre_event.metadata.op == auto.OpType.CREATE]
    resources = [m for m in creates if m.type != "pulumi:pulumi:Stack" and not m.type.startswith("pulumi:providers:")]
    assert [(m.type, m.urn.rsplit("::", 1)[1]) for m in resources] == [("pulumi-python:dynamic:Resource", "marker")]
    assert not target.exists()

    up = stack.up()
    assert up.summary.result == "succeeded"
    assert target.read_text() == "hello from the engine"

    stacks_dir = tmp_path / "state" / "pulumi" / ".pulumi" / "stacks"
    stack_files = list(stacks_dir.rglob("engine-test.json"))
    assert stack_files, "the file backend holds the stack's state"

    stack.destroy()
    assert not target.exists()
    stack.workspace.remove_stack("engine-test")
    assert not list(stacks_dir.rglob("*.json"))
