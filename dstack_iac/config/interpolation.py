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
    return ValueError(f"unknown reference ${{{{ {name} }}}}: use ${{{{ run.args }}}} or ${{{{ env.NAME }}}} "
                      "(write $${{ for a literal ${{)")


def _missing_env(name: str) -> ValueError:
    variable = name[len(ENV_PREFIX):]
    return ValueError(f"${{{{ {name} }}}} refers to {variable}, which is not set in your environment")


def env_references(text: str, caller_env: Mapping[str, str]) -> dict[str, str]:
    """Check a command's references; the values of its `${{ env.NAME }}` ones, by NAME."""
    found = {}
    for reference in references(text):
        if reference.escaped or reference.name == RUN_ARGS:
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
) -> str:
    """Replace `${{ run.args }}` (shell-quoted, for display) and `${{ env.NAME }}`; `$${{` is a
    literal `${{`. References named in `keep` are left as written (resolved later, e.g. per
    node). Raises ValueError naming the first unknown reference."""

    def replace(match: re.Match) -> str:
        escaped, name = match.groups()
        if escaped:
            return match.group(0)[1:]
        if name in keep:
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
