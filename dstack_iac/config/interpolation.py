"""`${{ ... }}` references in configuration strings."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

_REFERENCE_RE = re.compile(r"(\$?)\$\{\{\s*([^}]*?)\s*\}\}")
NODE_RANK_REFERENCE = "dstack.node_rank"


def interpolate(
    text: str,
    run_args: Sequence[str] | None,
    caller_env: Mapping[str, str],
    keep: frozenset[str] = frozenset(),
) -> str:
    """Replace `${{ run.args }}` (shell-quoted) and `${{ env.NAME }}`; `$${{` is a literal `${{`.

    References named in `keep` are left as written (resolved later, e.g. per node).
    Raises ValueError naming the first unknown reference.
    """

    def replace(match: re.Match) -> str:
        escaped, name = match.groups()
        if escaped:
            return match.group(0)[1:]
        if name in keep:
            return match.group(0)
        if name == "run.args":
            return shlex.join(run_args or [])
        if name.startswith("env."):
            variable = name[4:]
            if variable not in caller_env:
                raise ValueError(f"${{{{ {name} }}}} refers to {variable}, which is not set in your environment")
            return caller_env[variable]
        raise ValueError(
            f"unknown reference ${{{{ {name} }}}}: use ${{{{ run.args }}}} or ${{{{ env.NAME }}}} "
            "(write $${{ for a literal ${{)"
        )

    return _REFERENCE_RE.sub(replace, text)


_NODE_RANK = re.compile(r"\$\{\{\s*" + re.escape(NODE_RANK_REFERENCE) + r"\s*\}\}")


def resolve_node_rank(text: str, rank: int) -> str:
    """`${{ dstack.node_rank }}` in a volume name, for one node."""
    return _NODE_RANK.sub(str(rank), text)
