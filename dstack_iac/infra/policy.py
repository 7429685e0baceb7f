"""Policy guardrails: Pulumi CrossGuard policy packs run against a run's resources before
anything is created.

A pack is a directory with a `PulumiPolicy.yaml` (`runtime: python`) and a `__main__.py` that
builds a `pulumi_policy.PolicyPack`. The engine starts it through the package's language host
(`infra/language_host.py`, its `RunPlugin`), with the pack's own virtualenv when its
`PulumiPolicy.yaml` names one (`runtime.options.virtualenv`), else the Python of dstack-iac,
which has `pulumi-policy`. Packs come from `--policy-pack DIR` and, as a team's default that a
flag cannot leave out, from `$DSTACK_IAC_POLICY_PACKS` (directories separated by `:`; an entry
`DIR=CONFIG.json` gives the pack its policy configuration, as `--policy-pack-config` does).

The engine reports each violation as a `policyEvent`; `PolicyFinding` is one of them, and a
mandatory one makes the preview fail: `PolicyViolation` says which policy, on which resource,
and why.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from dstack_iac.errors import BadInput

POLICY_PACKS_ENV = "DSTACK_IAC_POLICY_PACKS"
MANDATORY = "mandatory"


class PolicyPackError(BadInput):
    """A policy pack that cannot be used as given: refused before anything is planned."""


@dataclass(frozen=True)
class PolicyPack:
    directory: Path
    name: str
    version: str
    config: Path | None = None
    source: str = "--policy-pack"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


def _load_pack(directory: Path, config: Path | None, source: str) -> PolicyPack:
    import yaml

    directory = directory.expanduser().resolve()
    manifest = directory / "PulumiPolicy.yaml"
    if not manifest.is_file():
        raise PolicyPackError(f"{source} {directory}: not a policy pack (no PulumiPolicy.yaml there)")
    try:
        data = yaml.safe_load(manifest.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyPackError(f"{manifest}: cannot be read as YAML ({exc})") from None
    if not isinstance(data, dict):
        raise PolicyPackError(f"{manifest}: expected a mapping with name, runtime and version")
    runtime = data.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if runtime_name != "python":
        raise PolicyPackError(f"{manifest}: runtime {runtime_name!r} is not supported: dstack-iac runs Python "
                              "policy packs (runtime: python)")
    if not (directory / "__main__.py").is_file():
        raise PolicyPackError(f"{source} {directory}: the pack has no __main__.py")
    if config is not None:
        config = config.expanduser().resolve()
        try:
            parsed = json.loads(config.read_text())
        except (OSError, ValueError) as exc:
            raise PolicyPackError(f"policy pack config {config}: cannot be read as JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise PolicyPackError(f"policy pack config {config}: expected a JSON object (policy name -> settings)")
    return PolicyPack(directory=directory, name=str(data.get("name") or directory.name),
                      version=str(data.get("version") or ""), config=config, source=source)


def team_packs(value: str | None = None) -> list[PolicyPack]:
    """The packs of `$DSTACK_IAC_POLICY_PACKS`."""
    value = os.environ.get(POLICY_PACKS_ENV, "") if value is None else value
    packs = []
    for entry in filter(None, (part.strip() for part in value.split(os.pathsep))):
        directory, _, config = entry.partition("=")
        packs.append(_load_pack(Path(directory), Path(config) if config else None, f"${POLICY_PACKS_ENV}"))
    return packs


def resolve_packs(directories: Sequence[Path] = (), configs: Sequence[Path] = ()) -> list[PolicyPack]:
    """The team's packs, then those of the flags (`configs` pair with `directories` in order, as
    Pulumi's `--policy-pack-config` does). A pack named twice runs once."""
    if configs and len(configs) != len(directories):
        raise PolicyPackError(f"--policy-pack-config was given {len(configs)} times for {len(directories)} "
                              "--policy-pack: give one per pack, in the same order")
    packs = team_packs()
    for index, directory in enumerate(directories):
        packs.append(_load_pack(Path(directory), Path(configs[index]) if configs else None, "--policy-pack"))
    unique: dict[Path, PolicyPack] = {}
    for pack in packs:
        unique.setdefault(pack.directory, pack)
    return list(unique.values())


def plan_entries(packs: Sequence[PolicyPack]) -> list[str]:
    """The packs as a RunPlan keeps them (`DIR` or `DIR=CONFIG`, as $DSTACK_IAC_POLICY_PACKS)."""
    return [f"{pack.directory}={pack.config}" if pack.config else str(pack.directory) for pack in packs]


def packs_of_plan(entries: Sequence[str]) -> list[PolicyPack]:
    packs = []
    for entry in entries:
        directory, _, config = entry.partition("=")
        packs.append(_load_pack(Path(directory), Path(config) if config else None, "the run's policy pack"))
    return packs


def engine_args(packs: Sequence[PolicyPack], scratch: Path | None = None) -> list[str]:
    """`--policy-pack DIR ...` (and `--policy-pack-config FILE ...` for all of them when any has
    one: the engine pairs them by position; a pack without one gets an empty config)."""
    args: list[str] = []
    for pack in packs:
        args += ["--policy-pack", str(pack.directory)]
    if any(pack.config for pack in packs):
        for pack in packs:
            config = pack.config
            if config is None:
                directory = scratch or Path(tempfile.mkdtemp(prefix="dstack-iac-policy-"))
                config = directory / f"{pack.name}-empty-config.json"
                config.write_text("{}")
            args += ["--policy-pack-config", str(config)]
    return args


class PolicyFinding(BaseModel):
    """One violation the engine reported (a `policyEvent`)."""

    pack: str
    version: str = ""
    policy: str
    enforcement: str
    message: str
    resource_urn: str = ""

    @property
    def mandatory(self) -> bool:
        return self.enforcement == MANDATORY

    @property
    def resource(self) -> str:
        """`type name` of the resource, or "the stack" for a stack policy."""
        if not self.resource_urn:
            return "the stack"
        parts = self.resource_urn.split("::")
        kind = parts[-2].split("$")[-1] if len(parts) >= 2 else ""
        return "the stack" if kind == "pulumi:pulumi:Stack" else f"{kind} {parts[-1]}"

    def describe(self) -> str:
        text = " ".join(self.message.split())
        return f"[{self.enforcement}] {self.policy} ({self.pack}) on {self.resource}: {text}"


def finding_from_event(event) -> PolicyFinding:
    """A `pulumi.automation.events.PolicyEvent` as a finding."""
    return PolicyFinding(pack=event.policy_pack_name or "", version=event.policy_pack_version or "",
                         policy=event.policy_name or "", enforcement=str(event.enforcement_level or ""),
                         message=(event.message or "").strip(), resource_urn=event.resource_urn or "")


class PolicyViolation(BadInput):
    """A mandatory policy refused the run's resources: nothing was created."""

    def __init__(self, findings: Sequence[PolicyFinding]):
        self.findings = list(findings)
        mandatory = [finding for finding in self.findings if finding.mandatory]
        lines = "\n".join(f"  - {finding.describe()}" for finding in mandatory)
        plural = "ies" if len(mandatory) != 1 else "y"
        super().__init__(f"{len(mandatory)} mandatory polic{plural} violated:\n{lines}",
                         hint="change the configuration (or the policy pack's config) so that the policies pass")


def check_findings(findings: Sequence[PolicyFinding]) -> None:
    if any(finding.mandatory for finding in findings):
        raise PolicyViolation(findings)
