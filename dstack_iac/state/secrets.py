"""Secrets a task refers to as `${{ secrets.NAME }}`, kept encrypted under the state dir with the
passphrase that also encrypts the Pulumi stacks' secrets.

AES-256-GCM with a key derived by scrypt from the passphrase (one salt per store; each value
has its own nonce and is bound to its name), from the `cryptography` package. Files are written
privately and atomically (paths.write_private). A value never leaves this module except to the
command that asked for it (`secret get`) and to the run that uses it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets as token_source
from functools import lru_cache
from pathlib import Path

from dstack_iac.errors import BadInput, EnvironmentProblem
from dstack_iac.paths import ensure_private_dir, state_dir, write_private

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MAX_VALUE_BYTES = 64 * 1024


class UnknownSecret(BadInput):
    pass


def passphrase_file() -> Path:
    return state_dir() / "passphrase"


def ensure_passphrase() -> dict[str, str]:
    """How the engine gets the passphrase: the caller's PULUMI_CONFIG_PASSPHRASE(_FILE), else a
    random one the state dir keeps (made once, with O_EXCL so two first runs agree)."""
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None:
        return {"PULUMI_CONFIG_PASSPHRASE": os.environ["PULUMI_CONFIG_PASSPHRASE"]}
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return {"PULUMI_CONFIG_PASSPHRASE_FILE": os.environ["PULUMI_CONFIG_PASSPHRASE_FILE"]}
    path = passphrase_file()
    if not path.exists():
        ensure_private_dir(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(token_source.token_urlsafe(32))
    return {"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}


def _passphrase() -> str:
    source = ensure_passphrase()
    if "PULUMI_CONFIG_PASSPHRASE" in source:
        return source["PULUMI_CONFIG_PASSPHRASE"]
    try:
        return Path(source["PULUMI_CONFIG_PASSPHRASE_FILE"]).read_text().strip()
    except OSError as exc:
        raise EnvironmentProblem(f"the passphrase file cannot be read: {exc}") from None


@lru_cache(maxsize=4)
def _key(passphrase: str, salt: bytes) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, **_SCRYPT).derive(passphrase.encode())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadInput(f"{name!r} is not a secret name: letters, digits, '_', '.', '-', starting with a letter or '_'")
    return name


class SecretStore:
    """The secrets of one state dir."""

    def __init__(self, path: Path | None = None):
        self.path = path or state_dir() / "secrets.json"

    def _load(self) -> dict:
        if not self.path.is_file():
            return {"version": 1, "salt": _b64(token_source.token_bytes(16)), "secrets": {}}
        try:
            data = json.loads(self.path.read_text())
            data["secrets"], data["salt"]  # noqa: B018 - the shape is checked here, once
            return data
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EnvironmentProblem(f"the secret store {self.path} cannot be read ({exc}); move it away to start "
                                     "a new one") from None

    def _aead(self, data: dict):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(_key(_passphrase(), base64.b64decode(data["salt"])))

    def names(self) -> list[str]:
        return sorted(self._load()["secrets"])

    def set(self, name: str, value: str) -> None:
        check_name(name)
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise BadInput(f"the value of {name} is over {MAX_VALUE_BYTES // 1024} KB: store a path to a file instead")
        data = self._load()
        nonce = token_source.token_bytes(12)
        sealed = self._aead(data).encrypt(nonce, value.encode(), name.encode())
        data["secrets"][name] = {"nonce": _b64(nonce), "value": _b64(sealed)}
        write_private(self.path, json.dumps(data, indent=1))

    def get(self, name: str) -> str:
        data = self._load()
        entry = data["secrets"].get(name)
        if entry is None:
            raise UnknownSecret(f"no secret named {name!r}: set it with `dstack-iac secret set {name}`")
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead(data).decrypt(base64.b64decode(entry["nonce"]), base64.b64decode(entry["value"]),
                                            name.encode()).decode()
        except (InvalidTag, ValueError, KeyError) as exc:
            raise EnvironmentProblem(f"the secret {name!r} cannot be decrypted with this passphrase (was "
                                     "PULUMI_CONFIG_PASSPHRASE changed?)") from exc

    def delete(self, name: str) -> bool:
        data = self._load()
        if data["secrets"].pop(name, None) is None:
            return False
        write_private(self.path, json.dumps(data, indent=1))
        return True

    def resolve(self, names: list[str]) -> dict[str, str]:
        """The values of `names`; every missing one is named in one error."""
        known = set(self.names())
        missing = [name for name in names if name not in known]
        if missing:
            listing = ", ".join(missing)
            raise UnknownSecret(f"the task refers to secret{'s' if len(missing) > 1 else ''} {listing}, not set: "
                                f"dstack-iac secret set {missing[0]}")
        return {name: self.get(name) for name in names}
