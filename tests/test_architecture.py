"""The architecture holds: imports go one way (import-linter contracts in pyproject.toml), and no
module outside `dstack_iac/backends/` compares a backend's name."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dstack_iac.backends.registry import names
from tests.helpers import REPO

PACKAGE = REPO / "dstack_iac"
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                               "sys.exit(lint_imports_command())"]


def lint(package_parent: Path, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([*LINT, "--config", str(config), "--no-cache"], cwd=package_parent, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept():
    result = lint(REPO, REPO / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, forbidden, contract", [
    ("config/models.py", "from dstack_iac.runs import lifecycle", "layers"),
    ("execution/script.py", "from dstack_iac.backends.local import node", "layers"),
    ("runs/planning.py", "from dstack_iac.backends.aws import catalog", "no module outside backends/"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, forbidden, contract):
    shutil.copytree(PACKAGE, tmp_path / "dstack_iac", ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "dstack_iac" / module
    target.write_text(target.read_text() + f"\n{forbidden}  # added by the test\n")
    result = lint(tmp_path, tmp_path / "pyproject.toml")
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout


def _backend_name_comparisons(path: Path, backend_names: set[str]) -> list[str]:
    """Comparisons with a backend's name as a literal: `x == "aws"`, `x in ("aws", "gcp")`."""
    tree = ast.parse(path.read_text())
    found = []

    def literal_names(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Constant) and node.value in backend_names:
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(literal_names(element) for element in node.elts)) if node.elts else set()
        return set()

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            hits = set().union(literal_names(node.left), *(literal_names(c) for c in node.comparators))
            if hits:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: compares with {sorted(hits)}")
        if isinstance(node, ast.match_case) and isinstance(node.pattern, ast.MatchValue):
            if literal_names(node.pattern.value):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: matches a backend name")
    return found


def test_no_module_outside_backends_compares_a_backend_name():
    backend_names = set(names())
    offending = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "backends" in path.relative_to(PACKAGE).parts:
            continue
        offending += _backend_name_comparisons(path, backend_names)
    assert offending == []


def test_the_check_itself_finds_a_comparison(tmp_path):
    sample = REPO / "dstack_iac" / "_architecture_probe.py"
    try:
        sample.write_text('def f(plan):\n    return plan.backend == "local" or plan.backend in ("aws", "gcp")\n')
        assert len(_backend_name_comparisons(sample, set(names()))) == 2
    finally:
        sample.unlink()
