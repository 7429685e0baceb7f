"""What a task brings onto its nodes besides the working directory: a git repo (`repos`) and
single files or directories (`files`), in dstack's long and short forms.

Local paths are resolved against the configuration file's directory when the file is loaded, so
everything after the loader sees absolute paths. A repo URL's credentials are split off into a
secret, so the URL can be shown, logged and recorded safely.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_serializer, field_validator, model_validator

from dstack_iac.config.base import Model, validation_context

_DRIVE_RE = re.compile(r"^[A-Za-z]$")


def split_source_shorthand(value: str, what: str) -> tuple[str, str | None]:
    """`source[:path]` -> (source, path or None). A colon inside a URL's authority
    (`https://user:token@host:port/...`), of `git@host:org/repo` or after a Windows drive letter
    belongs to the source."""
    scheme = re.match(r"^[a-z][a-z0-9+.-]*://[^/]*", value)
    if scheme:
        # The authority (user:token@host:port) is the source's own; a path follows the last ':'.
        authority, rest = scheme.group(0), value[scheme.end():]
        parts = rest.split(":")
        parts = [authority + parts[0], *parts[1:]]
    else:
        parts = value.split(":")
        if len(parts) > 1 and ("@" in parts[0] or (_DRIVE_RE.match(parts[0]) and parts[1][:1] in ("\\", "/"))):
            parts = [f"{parts[0]}:{parts[1]}", *parts[2:]]
    if len(parts) > 2 or not parts[0]:
        raise ValueError(f"{value!r} is not a valid {what}: write SOURCE or SOURCE:PATH "
                         "(a path on the node, relative to the working directory, or ~/..., or absolute)")
    return parts[0], (parts[1] if len(parts) == 2 else None)


def _resolve_local(path: str, info: ValidationInfo) -> str:
    """Relative local paths are relative to the configuration file's directory."""
    expanded = Path(os.path.expanduser(path))
    if not expanded.is_absolute():
        expanded = Path(validation_context(info).get("config_dir", Path.cwd())) / expanded
    return os.path.normpath(expanded)


def check_node_path(path: str, field: str) -> str:
    """A path on the node: relative (to the working directory), `~/...` or absolute."""
    if not isinstance(path, str) or not path.strip() or "\n" in path or "\0" in path:
        raise ValueError(f"{field} {path!r} must be a path on the node")
    if path.startswith("~") and not (path == "~" or path.startswith("~/")):
        raise ValueError(f"{field} {path!r}: ~username is not supported, write ~/... (the run's user's home)")
    if re.match(r"^[A-Za-z]:[\\/]", path) or "\\" in path:
        raise ValueError(f"{field} {path!r} must be a Unix path (the node runs Linux)")
    return path


def split_url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """`https://user:token@host/x` -> (`https://host/x`, user, token)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme in ("http", "https") and parsed.password is not None:
        host = parsed.hostname or ""
        netloc = host + (f":{parsed.port}" if parsed.port else "")
        return urllib.parse.urlunsplit(parsed._replace(netloc=netloc)), parsed.username, parsed.password
    return url, None, None


class RepoSpec(Model):
    """A git repository checked out on every node (dstack allows one per run)."""

    local_path: str | None = Field(default=None, description="A repository on this machine (relative to the "
                                                              "configuration file's directory); uploaded as its "
                                                              "git tree with its .git.")
    url: str | None = Field(default=None, description="A repository to clone (https:// or git@host:org/repo.git); "
                                                      "credentials in the URL are kept as a secret.")
    branch: str | None = Field(default=None, description="The branch to check out; the current (local) or default "
                                                         "(url) branch when unset.")
    hash: str | None = Field(default=None, description="The commit to check out.")
    path: str = Field(default=".", description="Where the repo lands on the node: relative to the working "
                                               "directory, ~/..., or absolute.")
    if_exists: Literal["error", "skip"] = Field(default="error", description="When `path` is not empty on the "
                                                                             "node: fail (error) or keep what is "
                                                                             "there (skip).")
    url_username: str | None = Field(default=None, exclude=True, description="Split off the URL when loaded.")
    url_password: SecretStr | None = Field(default=None, exclude=True, description="Split off the URL when loaded.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            source, path = split_source_shorthand(value, "repo")
            is_url = "://" in source or re.match(r"^[\w.-]+@[\w.-]+:", source) is not None
            value = {"url" if is_url else "local_path": source, **({"path": path} if path else {})}
        if isinstance(value, dict):
            given = [key for key in ("local_path", "url") if value.get(key) is not None]
            if len(given) != 1:
                raise ValueError("a repo needs exactly one of local_path or url" if not given
                                 else "local_path and url are mutually exclusive: give one")
            if value.get("url") is not None and any(k in value for k in ("url_username", "url_password")):
                raise ValueError("give credentials inside url (https://user:token@host/...)")
            if isinstance(value.get("url"), str):
                url, username, password = split_url_credentials(value["url"])
                value = {**value, "url": url, "url_username": username, "url_password": password}
        return value

    @field_validator("local_path")
    @classmethod
    def _local(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        resolved = _resolve_local(value, info)
        if not Path(resolved).is_dir():
            raise ValueError(f"local_path {value!r} is not a directory ({resolved})")
        return resolved

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_node_path(value, "path")

    @field_validator("hash", "branch")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None and (not re.match(r"^[\w./@+-]+$", value) or value.startswith("-")):
            raise ValueError(f"{value!r} is not a git branch or commit")
        return value

    @field_serializer("url_password", when_used="json")
    def _mask(self, value: SecretStr | None) -> str | None:
        return None if value is None else str(value)

    @property
    def display(self) -> str:
        source = self.local_path or self.url or ""
        at = self.hash or self.branch
        return f"{source}{'@' + at if at else ''} -> {self.path}"


class FileMapping(Model):
    """A file or directory of this machine copied to every node before the commands."""

    local_path: str = Field(description="A file or directory here (relative to the configuration file's "
                                        "directory, or ~/...).")
    path: str = Field(description="Where it lands on the node: relative to the working directory, ~/..., or "
                                  "absolute.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            source, path = split_source_shorthand(value, "file mapping")
            return {"local_path": source, "path": path if path is not None else source}
        return value

    @field_validator("local_path")
    @classmethod
    def _local(cls, value: str, info: ValidationInfo) -> str:
        resolved = _resolve_local(value, info)
        if not os.path.exists(resolved):
            raise ValueError(f"local_path {value!r} does not exist ({resolved})")
        return resolved

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        check_node_path(value, "path")
        if os.path.normpath(value) in ("/", ".", "~"):
            raise ValueError(f"path {value!r} would replace a whole directory tree: name a file or subdirectory")
        return value

    @property
    def display(self) -> str:
        return f"{self.local_path} -> {self.path}"
