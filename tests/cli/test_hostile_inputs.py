"""Hostile and broken input through the CLI: each gets a clear message and exit 2, or runs exactly
what the user wrote; never a traceback, never a command the user did not write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import TASK_HEADER, assert_nothing_left, dstack, run_cli

OK = "type: task\ncommands: [x]\n"


def bomb(levels: int, fan: int) -> str:
    lines = ["type: task", 'l0: &l0 ["x"]']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * fan) + "]")
    lines.append(f"commands: *l{levels - 1}")
    return "\n".join(lines) + "\n"


# (id, file content as bytes or text, a fragment the error names)
BAD_FILES = [
    ("random-bytes", bytes(range(256)) * 4, "is not UTF-8 text"),
    ("latin-1", "type: task\ncommands: ['caf\xe9']\n".encode("latin-1"), "is not UTF-8 text"),
    ("utf-16", "type: task\ncommands: [x]\n".encode("utf-16"), "is not UTF-8 text"),
    ("nul-byte", b"type: task\ncommands: [x]\x00\n", "contains a NUL byte"),
    ("only-ff", b"\xff" * 64, "is not UTF-8 text"),
    ("control-char", "type: task\ncommands: ['\x07']\n", "YAML"),
    ("alias-bomb", bomb(9, 9), "YAML expands to more than"),
    ("alias-bomb-wide", bomb(4, 200), "YAML expands to more than"),
    ("merge-bomb", "type: task\na: &a {k1: 1, k2: 2}\nb: &b {<<: [*a, *a, *a]}\ncommands: [x]\n" + "".join(
        f"c{i}: &c{i} [" + ", ".join([f"*c{i - 1}" if i else "*b"] * 30) + "]\n" for i in range(4)), "YAML expands"),
    ("deep-lists", "type: task\ncommands: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("deep-maps", "type: task\ncommands: [x]\nx: " + "{a: " * 200 + "1" + "}" * 200 + "\n", "nested"),
    ("huge-file", "type: task\ncommands: [x]\n# " + "x" * (2 * 1024 * 1024) + "\n", "a configuration is at most"),
    ("empty", "", "expected a mapping of fields"),
    ("document-marker-only", "---\n", "expected a mapping of fields"),
    ("top-level-list", "- type: task\n", "expected a mapping of fields"),
    ("top-level-scalar", "task\n", "expected a mapping of fields"),
    ("no-type", "commands: [x]\n", "type is missing"),
    ("type-service", "type: service\ncommands: [x]\n", "this file must say `type: task`"),
    ("type-list", "type: [task]\ncommands: [x]\n", "this file must say `type: task`"),
    ("unclosed-quote", "type: task\ncommands: ['x]\n", "YAML syntax error"),
    ("tab-indent", "type: task\ncommands:\n\t- x\n", "YAML syntax error"),
    ("complex-key", "type: task\n? [a, b]\n: 1\ncommands: [x]\n", "a key must be a plain string"),
    ("duplicate-key", "type: task\ncommands: [x]\ncommands: [y]\n", "duplicate key 'commands'"),
    ("nodes-quoted", OK + "nodes: '3'\n", "nodes must be a whole number"),
    ("nodes-bool", OK + "nodes: true\n", "nodes must be a whole number"),
    ("nodes-float", OK + "nodes: 2.5\n", "nodes must be a whole number"),
    ("nodes-negative", OK + "nodes: -1\n", "greater than or equal to 1"),
    ("nodes-huge", OK + "nodes: 100000\n", "less than or equal to 1024"),
    ("disk-zero", OK + "resources: {disk: 0GB}\n", "holds nothing"),
    ("memory-negative", OK + "resources: {memory: -8GB}\n", "not a size"),
    ("gpu-count-negative", OK + "resources: {gpu: 'A100:-1'}\n", "resources.gpu"),
    ("cpu-words", OK + "resources: {cpu: many}\n", "not a whole number"),
    ("max-duration-absurd", OK + "max_duration: 1000000000000d\n", "more than a year"),
    ("retry-duration-absurd", OK + "retry: {duration: 99999w}\n", "more than a year"),
    ("port-out-of-range", OK + "ports: [70000]\n", "outside 1..65535"),
    ("port-words", OK + "ports: ['a:b']\n", "is not a port mapping"),
    ("port-twice", OK + "ports: [8080, 8080]\n", "given twice"),
    ("env-nested", OK + "env: {A: [1]}\n", "must be a string or number"),
    ("env-number-item", OK + "env: [1]\n", "write KEY=VALUE"),
    ("env-bad-name", OK + "env: ['1A=x']\n", "is not a valid variable name"),
    ("env-missing", OK + "env: [DSTACK_TEST_SURELY_UNSET]\n", "not set in your environment"),
    ("commands-number", "type: task\ncommands: 5\n", "commands"),
    ("commands-nested", "type: task\ncommands: [[x]]\n", "a command must be a string"),
    ("unknown-reference", "type: task\ncommands: ['echo ${{ steps.X }}{{']\n", "unknown reference"),
    ("missing-env-reference", "type: task\ncommands: ['echo ${{ env.DSTACK_TEST_SURELY_UNSET }}']\n",
     "not set in your environment"),
    ("resources-list", OK + "resources: [1]\n", "resources"),
    ("name-space", OK + "name: 'a b'\n", "is not a valid name"),
    ("name-newline", OK + "name: \"a\\nb\"\n", "is not a valid name"),
    ("name-path", OK + "name: ../etc\n", "is not a valid name"),
    ("name-reserved", OK + "name: volume-x\n", "reserved"),
    ("registry-without-image", OK + "registry_auth: {username: u, password: p}\n", "no image to pull"),
    ("image-and-python", "type: task\nimage: x\npython: '3.11'\ncommands: [x]\n", "mutually exclusive"),
    ("python-unknown", OK + "python: '2.7'\n", "is not supported"),
    ("backend-unknown", OK + "backends: [mars]\n", "unknown backend 'mars'"),
    ("working-dir-escapes", OK + "working_dir: ../../etc\n", "must be a path inside"),
    ("volume-relative", OK + "volumes: ['data:relative/path']\n", "must be absolute"),
    ("volume-workflow", OK + "volumes: ['data:/workflow/x']\n", "is reserved"),
]


@pytest.mark.parametrize("case_id, content, fragment", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_files_are_refused_with_a_message(tmp_path, case_id, content, fragment):
    path = tmp_path / "bad.dstack.yml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_cli("validate", "-f", str(path), timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "bad.dstack.yml" in result.stderr, "the message names the file"


BAD_INVOCATIONS = [
    ("file-is-a-directory", ["-f", "{dir}"], "must end with .dstack.yml"),
    ("file-missing", ["-f", "{dir}/nope.dstack.yml"], "file not found"),
    ("file-dev-null", ["-f", "/dev/null"], "must end with .dstack.yml"),
    ("dir-missing", ["{dir}/missing-dir"], "is not a directory"),
    ("bad-gpu-flag", ["-f", "{dir}/ok.dstack.yml", "--gpu", "A100:$(reboot)"], "--gpu"),
    ("bad-port-flag", ["-f", "{dir}/ok.dstack.yml", "-p", "x;y"], "--port"),
    ("bad-env-flag", ["-f", "{dir}/ok.dstack.yml", "-e", "1=2"], "--env"),
]


@pytest.mark.parametrize("case_id, args, fragment", BAD_INVOCATIONS, ids=[case[0] for case in BAD_INVOCATIONS])
def test_bad_invocations_are_refused_with_a_message(tmp_path, case_id, args, fragment):
    (tmp_path / "ok.dstack.yml").write_text(OK)
    result = run_cli("validate", *[arg.format(dir=tmp_path) for arg in args], timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_the_tables_hold_at_least_fifty_inputs():
    assert len(BAD_FILES) + len(BAD_INVOCATIONS) + len(HOSTILE_VALUES) >= 50


HOSTILE_VALUES = ["$(touch pwned)", "`touch pwned`", "a; touch pwned", "x' ; touch pwned; echo '", 'x" ; touch pwned; "',
                  "line one\nline two", "tab\there", "back\\slash", "*", "--help", "${HOME}", "$((1+1))"]


@pytest.mark.e2e
def test_hostile_values_run_exactly_as_written(e2e_home, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "t.dstack.yml").write_text(
        TASK_HEADER + "env: [FROM_CALLER]\ncommands:\n"
        "  - printf '<%s>\\n' ${{ run.args }}\n"
        "  - 'echo \"quoted: ${{ run.args }}\"'\n"
        "  - printf 'caller <%s>\\n' ${{ env.DSTACK_HOSTILE }} \"$FROM_CALLER\"\n"
        "  - ls\n")
    values = HOSTILE_VALUES
    env = {"DSTACK_HOSTILE": "v1; touch pwned", "FROM_CALLER": "$(touch pwned) \"and\" 'quotes'"}
    result = dstack(e2e_home, "run", str(work), "-f", str(work / "t.dstack.yml"), "-y", "--", *values,
                    cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    printed = []
    for line in lines:
        if line.startswith("<") or printed and not printed[-1].endswith(">"):
            printed.append(line)
    joined = "\n".join(printed)
    for value in values:
        assert f"<{value}>" in joined, (value, joined)
    assert "quoted: " + " ".join(values) in result.stdout
    assert "caller <v1; touch pwned>" in result.stdout
    assert "caller <$(touch pwned) \"and\" 'quotes'>" in result.stdout
    assert "pwned" not in [line.strip() for line in lines], "no command the user did not write ran"
    assert not (work / "pwned").exists() and not Path("pwned").exists()
    assert_nothing_left(e2e_home)


@pytest.mark.e2e
@pytest.mark.parametrize("where", ["/", "~"])
def test_system_directories_are_not_uploaded(e2e_home, tmp_path, where):
    (tmp_path / "t.dstack.yml").write_text(OK)
    result = dstack(e2e_home, "run", os.path.expanduser(where), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    assert result.returncode == 2
    assert "every file in it would be uploaded" in result.stderr and "nothing was provisioned" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_a_symlink_loop_in_the_working_directory_is_uploaded_as_links(e2e_home, tmp_path):
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    (tmp_path / "self").symlink_to(tmp_path)
    (tmp_path / "t.dstack.yml").write_text(TASK_HEADER + "commands: ['ls -l | grep -c -- \"->\"']\n")
    result = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    assert result.returncode == 0, result.stderr
    assert "3" in result.stdout.split()
    assert_nothing_left(e2e_home)
