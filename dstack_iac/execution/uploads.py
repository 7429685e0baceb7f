"""What travels to every node before the commands: the working directory, or the task's repo
(its git tree with its .git, at the asked commit), and the task's `files`.

Packing happens once, on this machine (`pack_uploads`); each node then gets the same archives
(`upload_to_node`) over its SSH session's stdin: nothing is written through SFTP, and a repo's
credentials travel only as the node's stdin or in the git process's environment, never in a
command line, a log or the stack.
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dstack_iac.config.sources import RepoSpec
from dstack_iac.errors import BadInput
from dstack_iac.execution.script import STAGED_FILES, place_path
from dstack_iac.execution.workdir import collect_files, pack_working_dir, check_upload_size
from dstack_iac.model.plan import NodeRuntime, RunPlan

REPO_STAGING = "repo"  # under the node's directory: where a repo lands that the backend mounts elsewhere


@dataclass(frozen=True)
class RepoUpload:
    spec: RepoSpec
    archive: bytes | None  # None: the node clones spec.url itself
    checkout: str | None  # the commit or branch to check out on the node


@dataclass(frozen=True)
class Uploads:
    """The archives every node gets; `working_dir` is None when the task has a repo instead."""

    working_dir: bytes | None
    repo: RepoUpload | None
    files: bytes | None

    @property
    def size(self) -> int:
        return sum(len(a) for a in (self.working_dir, self.repo.archive if self.repo else None, self.files) if a)


class GitFailed(BadInput):
    pass


def _git(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})})
    except FileNotFoundError:
        raise GitFailed("repos: git is not installed on this machine") from None
    if done.returncode != 0:
        raise GitFailed(f"repos: git {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _askpass_env(spec: RepoSpec, directory: Path) -> dict[str, str]:
    """Credentials for git through GIT_ASKPASS: the script prints them from its environment."""
    if spec.url_password is None:
        return {}
    script = directory / "askpass.sh"
    script.write_text('#!/bin/sh\ncase "$1" in Username*) printf \'%s\\n\' "$DSTACK_GIT_USERNAME";; '
                      '*) printf \'%s\\n\' "$DSTACK_GIT_PASSWORD";; esac\n')
    script.chmod(0o700)
    return {"GIT_ASKPASS": str(script), "DSTACK_GIT_USERNAME": spec.url_username or "git",
            "DSTACK_GIT_PASSWORD": spec.url_password.get_secret_value()}


def clone_arguments(spec: RepoSpec, single_branch: bool) -> list[str]:
    """`git clone` arguments for a URL repo (the URL without credentials)."""
    args = ["clone", "--quiet"]
    if single_branch and not spec.hash:
        args.append("--single-branch")
    if spec.branch:
        args += ["--branch", spec.branch]
    return [*args, "--", spec.url or ""]


def _pack_tree(root: Path, names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for name in names:
            path = root / name
            if path.is_symlink() or path.exists():
                archive.add(path, arcname=name, recursive=name == ".git")
    return buffer.getvalue()


def pack_repo(root: Path) -> bytes:
    """A repo's git tree: tracked files and untracked ones git does not ignore, plus `.git`;
    a directory that is no git repo travels as the working directory does."""
    try:
        top = Path(_git(["rev-parse", "--show-toplevel"], cwd=root).strip())
    except GitFailed:
        return pack_working_dir(root)
    listed = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=top)
    names = sorted({name for name in listed.split("\0") if name})
    check_upload_size(top, [(name, top / name, (top / name).lstat().st_size) for name in names
                            if (top / name).is_symlink() or (top / name).is_file()])
    return _pack_tree(top, [*names, ".git"])


def pack_files(plan: RunPlan) -> bytes | None:
    """`files`, each under its index (`0/name`), modes kept; directories minus ignored files."""
    mappings = plan.configuration.files
    if not mappings:
        return None
    buffer = io.BytesIO()
    entries: list[tuple[str, Path, int]] = []
    for index, mapping in enumerate(mappings):
        source = Path(mapping.local_path)
        if source.is_dir():
            entries += [(f"{index}/{source.name}/{rel}", path, size) for rel, path, size in collect_files(source)]
            entries.append((f"{index}/{source.name}", source, 0))
        elif source.exists():
            entries.append((f"{index}/{source.name}", source, source.stat().st_size))
        else:
            raise BadInput(f"files[{index}]: {source} no longer exists")
    check_upload_size(Path(mappings[0].local_path), [e for e in entries if not e[1].is_dir()])
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for arcname, path, _ in sorted(entries, key=lambda e: e[0]):
            archive.add(path, arcname=arcname, recursive=False)
    return buffer.getvalue()


def pack_uploads(plan: RunPlan, clone_on_node: bool) -> Uploads:
    """Everything the nodes get, packed once. A URL repo is cloned here (and uploaded) unless the
    backend's nodes clone it themselves."""
    configuration = plan.configuration
    files = pack_files(plan)
    if not configuration.repos:
        return Uploads(pack_working_dir(plan.repo_dir), None, files)
    spec = configuration.repos[0]
    checkout = spec.hash or (spec.branch if spec.local_path else None)
    if spec.local_path:
        return Uploads(None, RepoUpload(spec, pack_repo(Path(spec.local_path)), checkout), files)
    if clone_on_node:
        return Uploads(None, RepoUpload(spec, None, spec.hash), files)
    single_branch = configuration.single_branch is not False
    with tempfile.TemporaryDirectory(prefix="dstack-iac-clone-") as scratch:
        env = _askpass_env(spec, Path(scratch))
        target = Path(scratch) / "repo"
        _git([*clone_arguments(spec, single_branch), str(target)], env=env)
        if spec.hash:
            _git(["-c", "advice.detachedHead=false", "checkout", "--quiet", spec.hash], cwd=target)
        return Uploads(None, RepoUpload(spec, pack_repo(target), None), files)


def _word(path: str) -> str:
    if path.startswith("$HOME"):
        return '"$HOME"' + shlex.quote(path[5:]) if len(path) > 5 else '"$HOME"'
    return shlex.quote(path)


def repo_commands(upload: RepoUpload, directory: str, single_branch: bool) -> tuple[str, str]:
    """(the check before the repo lands, what runs after) for the repo's directory on a node."""
    where = _word(directory)
    skip = upload.spec.if_exists == "skip"
    check = (f'if [ -d {where} ] && [ -n "$(ls -A {where} 2>/dev/null | grep -vx lost+found)" ]; then '
             + ("echo skip; exit 0; fi; " if skip else
                f"echo 'repos: {directory} is not empty on the node (if_exists: error; set if_exists: skip to keep "
                f"it)' >&2; exit 3; fi; ")
             + f"mkdir -p {where}")
    after = ""
    if upload.archive is None:  # the node clones it: credentials come from the askpass file
        clone = shlex.join(clone_arguments(upload.spec, single_branch))
        after = (f'GIT_TERMINAL_PROMPT=0 GIT_ASKPASS="${{DSTACK_ASKPASS:-}}" git {clone} {where}/.dstack-clone && '
                 f"mv {where}/.dstack-clone/.git {where}/ && (cd {where} && git checkout --quiet --force HEAD) && "
                 f"rm -rf {where}/.dstack-clone")
    if upload.checkout:
        step = f"git -C {where} -c advice.detachedHead=false checkout --quiet --force {shlex.quote(upload.checkout)}"
        after = f"{after} && {step}" if after else step
    return check, after


def upload_to_node(session, plan: RunPlan, uploads: Uploads, runtime: NodeRuntime) -> None:
    """Put the uploads on one node: the working directory (or the repo, checked as `if_exists`
    says and checked out at its commit), then the files' staging directory. A backend that
    mounts the repo elsewhere privately says where it is unpacked (`runtime.repo_dir`)."""
    endpoint = session.endpoint
    if uploads.working_dir is not None:
        session.extract(uploads.working_dir, endpoint.working_dir)
    if uploads.repo is not None:
        directory = runtime.repo_dir or place_path(uploads.repo.spec.path, endpoint.working_dir)
        check, after = repo_commands(uploads.repo, directory, plan.configuration.single_branch is not False)
        if session.command_output(check).strip() != "skip":
            if uploads.repo.archive is not None:
                session.extract(uploads.repo.archive, directory)
            if after:
                session.run_with_secret(after, "DSTACK_ASKPASS", uploads.repo.spec.url_username,
                                        uploads.repo.spec.url_password)
    if uploads.files is not None:
        session.extract(uploads.files, f"{endpoint.node_dir}/{STAGED_FILES}")
