"""`${{ ... }}` references in configuration strings.

In `commands` the references are checked when the file is loaded but never spliced into the
text: a run argument or an environment value is data, and the node script hands it to the shell
as a variable (execution/script.py), so `$(...)`, quotes or `;` in it are never run. Elsewhere
(`registry_auth`, volume names) a reference is replaced by its value.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_REFERENCE_RE = re.compile(r"(\$?)\$\{\{\s*([^}]*?)\s*\}\}")
NODE_RANK_REFERENCE = "dstack.node_rank"
RUN_ARGS = "run.args"
ENV_PREFIX = "env."
SECRETS_PREFIX = "secrets."
# A node's address in a heterogeneous task: groups[GROUP].nodes[NODE].IP_ADDRESS (by position).
GROUP_NODE_IP_RE = re.compile(r"^groups\[(\d+)\]\.nodes\[(\d+)\]\.IP_ADDRESS$")
_SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Reference:
    """A `${{ name }}` at text[start:end]; `escaped` for `$${{ ... }}`, a literal `${{ ... }}`."""

    start: int
    end: int
    name: str
    escaped: bool


def references(text: str) -> list[Reference]:
    return [Reference(m.start(), m.end(), m.group(2), bool(m.group(1))) for m in _REFERENCE_RE.finditer(text)]


def _unknown(name: str) -> ValueError:
    if name.startswith(SECRETS_PREFIX):
        return ValueError(f"${{{{ {name} }}}}: secrets go in env values and registry_auth (as in dstack), not in "
                          "commands: set env: [NAME=${{ secrets.X }}] and use $NAME")
    return ValueError(f"unknown reference ${{{{ {name} }}}}: use ${{{{ run.args }}}}, ${{{{ env.NAME }}}} or "
                      "${{ groups[I].nodes[J].IP_ADDRESS }} (write $${{ for a literal ${{)")


def secret_names(text: str) -> list[str]:
    """The NAMEs of the `${{ secrets.NAME }}` in `text` (checked: a bad name raises)."""
    names = []
    for reference in references(text):
        if reference.escaped or not reference.name.startswith(SECRETS_PREFIX):
            continue
        name = reference.name[len(SECRETS_PREFIX):]
        if not _SECRET_NAME_RE.match(name):
            raise ValueError(f"${{{{ {reference.name} }}}}: {name!r} is not a secret name")
        names.append(name)
    return names


def resolve_secrets(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with its `${{ secrets.NAME }}` replaced by the values (`$${{` stays literal)."""

    def replace(match: re.Match) -> str:
        escaped, name = match.groups()
        if escaped or not name.startswith(SECRETS_PREFIX):
            return match.group(0)
        return secrets[name[len(SECRETS_PREFIX):]]

    return _REFERENCE_RE.sub(replace, text)


def _missing_env(name: str) -> ValueError:
    variable = name[len(ENV_PREFIX):]
    return ValueError(f"${{{{ {name} }}}} refers to {variable}, which is not set in your environment")


def env_references(text: str, caller_env: Mapping[str, str]) -> dict[str, str]:
    """Check a command's references; the values of its `${{ env.NAME }}` ones, by NAME."""
    found = {}
    for reference in references(text):
        if reference.escaped or reference.name == RUN_ARGS or GROUP_NODE_IP_RE.match(reference.name):
            continue
        if not reference.name.startswith(ENV_PREFIX):
            raise _unknown(reference.name)
        variable = reference.name[len(ENV_PREFIX):]
        if variable not in caller_env:
            raise _missing_env(reference.name)
        found[variable] = caller_env[variable]
    return found


def interpolate(
    text: str,
    run_args: Sequence[str] | None,
    caller_env: Mapping[str, str],
    keep: frozenset[str] = frozenset(),
    keep_secrets: bool = False,
) -> str:
    """Replace `${{ run.args }}` (shell-quoted, for display) and `${{ env.NAME }}`; `$${{` is a
    literal `${{`. References named in `keep` are left as written (resolved later, e.g. per
    node). Raises ValueError naming the first unknown reference."""

    def replace(match: re.Match) -> str:
        escaped, name = match.groups()
        if escaped:
            return match.group(0)[1:]
        if name in keep or (keep_secrets and name.startswith(SECRETS_PREFIX)) or GROUP_NODE_IP_RE.match(name):
            return match.group(0)
        if name == RUN_ARGS:
            return shlex.join(run_args or [])
        if name.startswith(ENV_PREFIX):
            variable = name[len(ENV_PREFIX):]
            if variable not in caller_env:
                raise _missing_env(name)
            return caller_env[variable]
        raise _unknown(name)

    return _REFERENCE_RE.sub(replace, text)


_NODE_RANK = re.compile(r"\$\{\{\s*" + re.escape(NODE_RANK_REFERENCE) + r"\s*\}\}")


def resolve_node_rank(text: str, rank: int) -> str:
    """`${{ dstack.node_rank }}` in a volume name, for one node."""
    return _NODE_RANK.sub(str(rank), text)
