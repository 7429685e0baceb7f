"""The JSON Schema of `.dstack.yml` task files (for editors) and the generated field reference.

The models describe the normalised shape; files may use the compact spellings, so the editor
schema also accepts those wherever a validator parses them.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Any

from dstack_iac.config.models import ResourcesSpec, Retry, TaskConfiguration, VolumeConfiguration

# Compact spellings accepted in files, by schema definition name.
_SHORT_FORMS: dict[str, list[dict]] = {
    "IntRange": [{"type": "integer"}, {"type": "string", "examples": ["2", "1..2", "2.."]}],
    "MemoryRange": [{"type": "number"}, {"type": "string", "examples": ["16GB", "8GB..", "..64GB"]}],
    "CPUSpec": [{"type": "integer"}, {"type": "string", "examples": ["8", "2..8", "arm:8..", "x86:16"]}],
    "GPUSpec": [{"type": "integer"}, {"type": "string", "examples": ["24GB", "A100:2", "1..2", "nvidia:24GB:1..2"]}],
    "DiskSpec": [{"type": "number"}, {"type": "string", "examples": ["100GB.."]}],
    "PortMapping": [{"type": "integer"}, {"type": "string", "examples": ["8080", "3000:7860", "*:8080"]}],
    "Retry": [{"type": "boolean"}],
    "NetworkVolumeMount": [{"type": "string", "examples": ["my-volume:/data"]}],
    "InstanceVolumeMount": [{"type": "string", "examples": ["/mnt/cache:/cache"]}],
}

# One example per field for the reference page; a test checks every field has one.
EXAMPLES: dict[str, str] = {
    "type": "task",
    "name": "train-distrib",
    "image": "nvcr.io/nvidia/pytorch:22.12-py3",
    "python": '"3.11"',
    "commands": "[pip install -r requirements.txt, python train.py ${{ run.args }}]",
    "build": "[pip install -r requirements.txt]",
    "working_dir": "/workflow/src",
    "shell": "bash",
    "entrypoint": "python -m server",
    "registry_auth": "{username: me, password: ${{ env.REGISTRY_TOKEN }}}",
    "env": "[HF_TOKEN, MODEL=llama, DEBUG=]",
    "ports": '[7860, "3000:7860", "*:8080"]',
    "nodes": "2",
    "resources": "{gpu: 24GB, memory: 32GB.., disk: 200GB..}",
    "volumes": "[{name: my-volume, path: /volume_data}, /mnt/cache:/cache]",
    "backends": "[aws, gcp]",
    "regions": "[eu-west-1, eu-west-2]",
    "availability_zones": "[us-east-1a]",
    "instance_types": "[g5.xlarge]",
    "spot_policy": "auto",
    "max_price": "1.5",
    "max_duration": "3h",
    "retry": "{on_events: [no-capacity], duration: 1h}",
    "resources.cpu": "arm:8..",
    "resources.memory": "8GB..",
    "resources.shm_size": "16GB",
    "resources.disk": "100GB..",
    "resources.gpu": "nvidia:24GB:1..2",
    "retry.on_events": "[no-capacity, interruption, error]",
    "retry.duration": "1h",
    "repos": "[., \"https://github.com/org/repo:repo\"]",
    "files": "[data/train.csv, \"configs:~/configs\"]",
    "groups": "[{name: head, commands: [python serve.py]}, {name: workers, nodes: 2, commands: [python work.py]}]",
    "startup_order": "workers-first",
    "stop_criteria": "master-done",
    "stop_duration": "5m",
    "nvcc": "true",
    "docker": "true",
    "privileged": "true",
    "user": "ubuntu:ubuntu",
    "single_branch": "false",
    "priority": "50",
    "utilization_policy": "{min_gpu_utilization: 10, time_window: 1h}",
    "schedule": "{cron: \"0 3 * * *\"}",
    "idle_duration": "off",
    "creation_policy": "reuse",
    "fleets": "[my-fleet]",
    "instances": "[{fleet: my-fleet, instance: 0}]",
    "reservation": "cr-0123456789abcdef0",
    "tags": "{team: nlp}",
    "backend_options": "[{type: aws}]",
    "dstack": "false",
    "setup": "[pip install -r requirements.txt]",
    "home_dir": "/root",
}


def task_json_schema() -> dict[str, Any]:
    schema = TaskConfiguration.model_json_schema(mode="validation")
    for name, definition in schema.get("$defs", {}).items():
        if name in _SHORT_FORMS:
            schema["$defs"][name] = {"anyOf": [definition, *_SHORT_FORMS[name]], "description": definition.get("description", "")}
    # The file does not write the internal `kind` discriminator of volume mounts.
    for name in ("NetworkVolumeMount", "InstanceVolumeMount"):
        definition = schema["$defs"][name]["anyOf"][0]
        definition["properties"].pop("kind", None)
    schema["properties"]["python"]["anyOf"] = [{"type": "string"}, {"type": "number"}, {"type": "null"}]
    schema["properties"]["env"] = {
        "anyOf": [{"type": "array", "items": {"type": "string"}},
                  {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}}]
    }
    for field in ("max_duration",):
        schema["properties"][field]["anyOf"] = [{"type": "integer"}, {"type": "string"}, {"type": "null"}]
    schema["title"] = "dstack-iac task configuration (.dstack.yml)"
    return schema


def configuration_json_schema(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What editors check `*.dstack.yml` against: a task, a volume, or a type a backend brings
    (`extra`: type name -> model), told apart by `type`."""
    task = task_json_schema()
    definitions = task.pop("$defs", {})
    volume = VolumeConfiguration.model_json_schema(mode="validation")
    volume["properties"]["size"]["anyOf"] = [{"type": "number"}, {"type": "string", "examples": ["100GB", "1TB"]},
                                             {"type": "null"}]
    volume["title"] = "dstack-iac volume configuration"
    definitions.update(TaskConfiguration=task, VolumeConfiguration=volume)
    references = [{"$ref": "#/$defs/TaskConfiguration"}, {"$ref": "#/$defs/VolumeConfiguration"}]
    for kind, model in (extra or {}).items():
        schema = model.model_json_schema(mode="validation")
        definitions.update(schema.pop("$defs", {}))
        name = model.__name__
        definitions[name] = {**schema, "title": f"dstack-iac {kind} configuration"}
        references.append({"$ref": f"#/$defs/{name}"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dstack-iac configuration (.dstack.yml)",
        "oneOf": references,
        "$defs": definitions,
    }


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " | ".join(json.dumps(member.value) for member in annotation)
    text = re.sub(r"<enum '(\w+)'>", r"\1", str(annotation))
    text = re.sub(r"dstack_iac\.config\.[\w.]+\.", "", text.replace("typing.", ""))
    return text.replace("NoneType", "None").replace("<class '", "").replace("'>", "")


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if hasattr(value, "model_dump"):
        return str(value) if hasattr(value, "__str__") and type(value).__str__ is not object.__str__ else "see below"
    if value is None:
        return "unset"
    return json.dumps(value, default=str)


_TYPE_NAMES = {"volumes": "list[NetworkVolumeMount | InstanceVolumeMount | str]", "backends": "list[str] | None"}

_DEFAULT_NOTES = {
    "spot_policy": "on-demand",
    "max_duration": "off",
    "stop_duration": "5m",
    "resources": "cpu 2.., memory 8GB.., disk 100GB.., no GPU",
}


def reference_markdown() -> str:
    lines = [
        "# `.dstack.yml` task reference",
        "",
        "<!-- Generated from dstack_iac/config/models.py by `python -m dstack_iac.config.schema`; a test keeps it in sync. -->",
        "",
        "Every field of a `type: task` file. Unknown fields are errors. Durations are seconds or",
        "`30s`, `15m`, `3h`, `2d`, `1w`; sizes are `MB`, `GB` or `TB` (a bare number means GB).",
        "",
    ]
    sections = [("Task", "", TaskConfiguration), ("resources", "resources.", ResourcesSpec), ("retry", "retry.", Retry)]
    for title, prefix, model in sections:
        lines += [f"## {title}", "", "| Field | Type | Default | Example | Description |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            key = prefix + name
            default = _DEFAULT_NOTES.get(key) or _default(field)
            example = EXAMPLES[key]
            description = (field.description or "").replace("|", "\\|")
            type_name = _TYPE_NAMES.get(key) or _type_name(field.annotation)
            type_name = type_name.replace("|", "\\|")
            lines.append(f"| `{key}` | `{type_name}` | {default} | `{example}` | {description} |")
        lines.append("")
    lines += [
        "## GPU grammar",
        "",
        "`resources.gpu` is split on `:`; each part is a vendor (`nvidia`, `amd`, `google`, `tpu`, `intel`),",
        "model names (`A100` or `A10G,A100`), per-GPU memory or a range (`24GB`, `40GB..80GB`), or a count or",
        "range (`2`, `1..2`). The mapping form takes `vendor`, `name`, `count`, `memory`, `total_memory` and",
        "`compute_capability`. `A10G..A100` is not a range of models: write `A10G,A100`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown(), end="")
