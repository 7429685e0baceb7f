"""`--build`: the build commands run once per distinct environment, and what they built is kept.

The environment is the node's virtualenv (`DSTACK_VENV_DIR`) with whatever the build wrote into
it. It is keyed by the build commands, the Python the plan chose (and the version asked for),
the contents of the working-directory files the build commands name (a word of a command that is
an existing file, such as `requirements.txt` in `pip install -r requirements.txt`), and the
platform (the backend and the CPU architecture; the node checks its own interpreter version,
machine and libc against what the archive was built with, and rebuilds on a mismatch).

On the node, the build section of the script looks in the node's build cache (a directory of the
node's machine: this machine's cache for local runs) for `<key>.tar.gz`: when it is there, it is
unpacked as the venv (its scripts' paths moved to this run's venv) and the build commands do not
run; otherwise they run, in a subshell, and the venv is packed there. Concurrent nodes of one
machine take turns (flock), so one builds and the others reuse. Pure: rendering only.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

from dstack_iac.model.plan import NodeRuntime, RunPlan

ORIGIN_FILE = ".dstack-build-origin"  # inside the archive: the venv path it was built at
REUSED_MESSAGE = "Reusing the pre-built environment"
BUILDING_MESSAGE = "Building the environment"
STORED_MESSAGE = "Stored the built environment"

# Moves the paths of a restored venv (bin/ scripts' shebangs, activate, pyvenv.cfg) from the venv
# it was built at to this run's: what `virtualenv --relocatable` used to do.
_RELOCATE = (
    "import os, sys\n"
    "old, new = sys.argv[1].encode(), sys.argv[2].encode()\n"
    "paths = [os.path.join(new, b'pyvenv.cfg')] + [os.path.join(new, b'bin', n) for n in os.listdir(os.path.join(new, b'bin'))]\n"
    "for path in paths:\n"
    "    if os.path.islink(path) or not os.path.isfile(path):\n"
    "        continue\n"
    "    with open(path, 'rb') as f:\n"
    "        data = f.read()\n"
    "    if old in data and b'\\0' not in data[:4096]:\n"
    "        with open(path, 'wb') as f:\n"
    "            f.write(data.replace(old, new))\n"
)
_FINGERPRINT = ("import platform, sys; "
                "print(sys.version.split()[0], platform.machine(), platform.system(), '-'.join(platform.libc_ver()))")


def _words(command: str) -> list[str]:
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    # `--requirement=requirements.txt` names a file too.
    return [part for word in words for part in ([word, word.split("=", 1)[1]] if "=" in word else [word])]


def named_files(build: list[str], repo_dir: Path, working_dir: str | None) -> dict[str, str]:
    """{relative path: sha256} of the working-directory files the build commands name."""
    bases = [repo_dir]
    if working_dir and not working_dir.startswith("/"):
        bases.insert(0, repo_dir / working_dir)
    found: dict[str, str] = {}
    root = repo_dir.resolve()
    for command in build:
        for word in _words(command):
            if not word or word.startswith("-") or "\0" in word:
                continue
            for base in bases:
                candidate = (base / word)
                try:
                    resolved = candidate.resolve()
                    if not resolved.is_file() or root not in resolved.parents:
                        continue
                    digest = hashlib.sha256(resolved.read_bytes()).hexdigest()
                except OSError:
                    continue
                found[resolved.relative_to(root).as_posix()] = digest
                break
    return dict(sorted(found.items()))


def build_key(plan: RunPlan) -> str:
    configuration = plan.configuration
    inputs = {
        "commands": list(configuration.build),
        "python": plan.python,
        "python_version": configuration.python,
        "backend": plan.backend,
        "cpu_arch": plan.offer.cpu_arch,
        "files": named_files(list(configuration.build), plan.repo_dir, configuration.working_dir),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]


def cacheable(plan: RunPlan, runtime: NodeRuntime) -> bool:
    """Whether the build's result can be kept: a venv on the node (no image: the commands run
    in a container), a cache on the node, and a shell that is a shell (no entrypoint)."""
    configuration = plan.configuration
    return bool(plan.build and configuration.build and runtime.build_cache and not configuration.image
                and not configuration.entrypoint)


def build_commands(plan: RunPlan, runtime: NodeRuntime) -> list[str]:
    """What the node script runs before `commands`: nothing without --build; the build section
    when its result can be kept; else the build commands as they are."""
    configuration = plan.configuration
    if not plan.build or not configuration.build:
        return []
    if not cacheable(plan, runtime):
        return list(configuration.build)
    return [build_section(build_key(plan), runtime.build_cache, list(configuration.build), plan.force_build)]


def build_section(key: str, cache: str, build: list[str], force: bool) -> str:
    """POSIX sh (the task's shell may be sh): restore or build, under the key's lock."""
    archive = f'"$__dstack_build_cache/{key}.tar.gz"'
    body = "\n".join(build)  # as written: a command's own lines (a heredoc) must stay as they are
    return "\n".join([
        f"__dstack_build_cache={shlex.quote(cache)}",
        f"__dstack_build_fingerprint=$(python -c {shlex.quote(_FINGERPRINT)})",
        'mkdir -p "$__dstack_build_cache"',
        "(",
        "  if command -v flock >/dev/null 2>&1; then flock 9; fi",
        f"  if [ {1 if force else 0} = 0 ] && [ -f {archive} ] && "
        f'[ "$(cat {archive}.fingerprint 2>/dev/null)" = "$__dstack_build_fingerprint" ]; then',
        f'    echo "{REUSED_MESSAGE} {key} (the build commands do not run)"',
        '    rm -rf "$DSTACK_VENV_DIR" && mkdir -p "$DSTACK_VENV_DIR"',
        f'    tar -xzf {archive} -C "$DSTACK_VENV_DIR"',
        f'    "$DSTACK_VENV_DIR/bin/python" -c {shlex.quote(_RELOCATE)} "$(cat "$DSTACK_VENV_DIR/{ORIGIN_FILE}")" '
        '"$DSTACK_VENV_DIR"',
        "  else",
        f'    echo "{BUILDING_MESSAGE} {key}' + (' (--force-build)"' if force else '"'),
        "    (",
        body,
        "    )",
        f'    echo "$DSTACK_VENV_DIR" > "$DSTACK_VENV_DIR/{ORIGIN_FILE}"',
        # Keeping the result is a convenience: a full disk here never fails the run.
        f'    if tar -czf {archive}.partial -C "$DSTACK_VENV_DIR" . && mv -f {archive}.partial {archive} && '
        f'echo "$__dstack_build_fingerprint" > {archive}.fingerprint; then',
        f'      echo "{STORED_MESSAGE} {key} ($(du -h {archive} | cut -f1))"',
        "    else",
        f'      rm -f {archive}.partial {archive}; echo "The built environment could not be stored; the run goes on"',
        "    fi",
        "  fi",
        f') 9>"$__dstack_build_cache/{key}.lock"',
        '. "$DSTACK_VENV_DIR/bin/activate"',
    ])
