"""The Pulumi backend as a small object store: where run records, logs and name claims live next
to the stacks, so that everyone using one `PULUMI_BACKEND_URL` sees the same runs.

    file:///dir            files under dir/.dstack-iac/ (the default backend: the state dir's)
    s3://bucket/prefix?... objects under prefix/.dstack-iac/, with the URL's own parameters

Beyond read/write/list, two atomic primitives: `create` writes a key only if it does not exist
(a hard link on a file system; `If-None-Match: *` on S3, which the engine's own gocloud.dev
driver uses for its `IfNotExist` writes), and `update` changes a key as a compare-and-swap
(an flock around read and rename; on S3 a write `If-Match` the ETag just read, retried when
another writer came first). Of two writers, exactly one wins each round.

S3 is spoken directly (SigV4 over http.client, credentials from the environment or the shared
credentials file, else botocore's full chain) rather than through boto3: `ps` reads the
records of a whole team and must answer in well under a second, and creating a boto3 client
costs more than half of that on its own. The URL is read as the engine reads it (gocloud.dev
v0.46 as patched by Pulumi v3.276): `endpoint` (`disableSSL=true` or `disable_https=true` for
http), `region`, `profile`, `s3ForcePathStyle`/`use_path_style`, `ssetype`, `kmskeyid`.
"""

from __future__ import annotations

import configparser
import datetime
import email.utils
import hashlib
import hmac
import http.client
import os
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
import fcntl
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlparse

from dstack_iac.errors import EnvironmentProblem, InfrastructureError

ROOT = ".dstack-iac"


class StoreError(InfrastructureError):
    """The backend cannot be read or written (unreachable, access denied, ...)."""


class UnsupportedBackend(EnvironmentProblem):
    pass


class StoreBusy(StoreError):
    pass


Update = Callable[[bytes | None], bytes | None]  # the current value -> the new one (None: leave it)
UPDATE_ATTEMPTS = 40


@dataclass(frozen=True)
class BlobInfo:
    key: str  # relative to the store's root
    size: int
    modified: float  # epoch seconds, by the store's clock
    etag: str


class FileStore:
    """Keys are files under `root` (created as needed, with the user's umask like the engine's
    own file backend does)."""

    def __init__(self, root: Path, url: str):
        self.root = root
        self.url = url

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad key {key!r}")
        return self.root / key

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self._path(key)}: {exc.strerror}") from None

    def _staged(self, path: Path, data: bytes) -> str:
        partial = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(partial, 0o666 & ~_umask())
        except OSError as exc:
            if partial is not None:  # a full disk: the half-written copy is not left behind
                Path(partial).unlink(missing_ok=True)
            raise StoreError(f"cannot write {path}: {exc.strerror}") from None
        return partial

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        partial = self._staged(path, data)
        try:
            os.replace(partial, path)
        except OSError as exc:
            Path(partial).unlink(missing_ok=True)
            raise StoreError(f"cannot write {path}: {exc.strerror}") from None

    def create(self, key: str, data: bytes) -> bool:
        """Written whole or not at all: a hard link fails when the name exists (atomic, NFS too)."""
        path = self._path(key)
        partial = self._staged(path, data)
        try:
            os.link(partial, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc.strerror}") from None
        finally:
            Path(partial).unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot delete {self._path(key)}: {exc.strerror}") from None

    def update(self, key: str, change: Update) -> bytes | None:
        """Read, change and write `key` while holding its lock file: writers take turns."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~_umask())
        except OSError as exc:
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            new = change(self.read(key))
            if new is not None:
                self.write(key, new)
            return new
        finally:
            os.close(fd)

    def list(self, prefix: str = "") -> list[BlobInfo]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        found = []
        if not base.is_dir():
            return found
        for directory, _dirs, files in os.walk(base):
            for name in files:
                if (name.startswith(".") and name.endswith(".tmp")) or name.endswith(".lock"):
                    continue  # a write in flight, a lock
                path = Path(directory) / name
                try:
                    info = path.stat()
                except OSError:
                    continue
                found.append(BlobInfo(key=path.relative_to(self.root).as_posix(), size=info.st_size,
                                      modified=info.st_mtime, etag=f"{info.st_mtime_ns}-{info.st_size}"))
        return sorted(found, key=lambda item: item.key)

    def now(self) -> float:
        return time.time()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# --- S3 ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def _profile_credentials(profile: str) -> S3Credentials | None:
    files = [Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser(),
             Path(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")).expanduser()]
    for index, path in enumerate(files):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (OSError, configparser.Error):
            continue
        section = profile if index == 0 or profile == "default" else f"profile {profile}"
        if parser.has_option(section, "aws_access_key_id") and parser.has_option(section, "aws_secret_access_key"):
            return S3Credentials(parser.get(section, "aws_access_key_id"), parser.get(section, "aws_secret_access_key"),
                                 parser.get(section, "aws_session_token", fallback=None))
    return None


def _profile_region(profile: str) -> str | None:
    parser = configparser.RawConfigParser()
    try:
        parser.read(Path(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")).expanduser())
    except (OSError, configparser.Error):
        return None
    section = "default" if profile == "default" else f"profile {profile}"
    return parser.get(section, "region", fallback=None)


def _botocore_credentials(profile: str | None) -> S3Credentials | None:
    """Everything else the AWS SDKs accept (SSO, web identity, instance roles, ...)."""
    try:
        import botocore.session
    except ImportError:
        return None
    session = botocore.session.Session(profile=profile)
    found = session.get_credentials()
    if found is None:
        return None
    frozen = found.get_frozen_credentials()
    return S3Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "t")


class S3Store:
    """Objects under `prefix` in an S3 (or S3-compatible) bucket."""

    def __init__(self, url: str):
        parsed = urlparse(url)
        query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        self.url = url
        self.bucket = parsed.netloc
        self.prefix = "/".join(part for part in (unquote(parsed.path).strip("/"), ROOT) if part)
        self.profile = query.get("profile") or os.environ.get("AWS_PROFILE") or None
        self.region = (query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                       or _profile_region(self.profile or "default") or "us-east-1")
        endpoint = query.get("endpoint")
        insecure = _truthy(query.get("disableSSL")) or _truthy(query.get("disable_https"))
        self.path_style = _truthy(query.get("s3ForcePathStyle")) or _truthy(query.get("use_path_style"))
        if endpoint:
            if "://" not in endpoint:
                endpoint = ("http://" if insecure else "https://") + endpoint
            endpoint_url = urlparse(endpoint)
            self.scheme = "http" if insecure else endpoint_url.scheme
            self.endpoint_host = endpoint_url.netloc
        else:
            self.scheme, self.endpoint_host = "https", f"s3.{self.region}.amazonaws.com"
        self.sse = query.get("ssetype")
        self.kms_key = query.get("kmskeyid")
        self._credentials: S3Credentials | None = None
        self._local = threading.local()
        self._clock_offset = 0.0

    # --- transport -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.endpoint_host if self.path_style else f"{self.bucket}.{self.endpoint_host}"

    def _path(self, key: str = "") -> str:
        object_path = "/" + quote(key, safe="/-_.~") if key else "/"
        return f"/{self.bucket}{object_path}" if self.path_style else object_path

    def credentials(self) -> S3Credentials:
        if self._credentials is None:
            if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
                self._credentials = S3Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                                                  os.environ.get("AWS_SESSION_TOKEN") or None)
            else:
                self._credentials = (_profile_credentials(self.profile or "default")
                                     or _botocore_credentials(self.profile))
            if self._credentials is None:
                raise StoreError(f"no AWS credentials for the backend {self.url}",
                                 hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, as for Pulumi")
        return self._credentials

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            connection = kind(self.host, timeout=30)
            self._local.connection = connection
        return connection

    @staticmethod
    def _canonical_query(query: dict[str, str]) -> str:
        return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))

    def _sign(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> None:
        credentials = self.credentials()
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(body).hexdigest()
        headers.update({"host": self.host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        canonical_query = self._canonical_query(query)
        names = sorted(key.lower() for key in headers)
        canonical_headers = "".join(f"{name}:{str(headers[name]).strip()}\n" for name in names)
        signed = ";".join(names)
        canonical = "\n".join([method, path, canonical_query, canonical_headers, signed, payload_hash])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + credentials.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")

    def _request(self, method: str, key: str = "", *, query: dict[str, str] | None = None, body: bytes = b"",
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        query = query or {}
        path = self._path(key)
        last_error: Exception | None = None
        for attempt in range(3):
            request_headers = {k.lower(): v for k, v in (headers or {}).items()}
            self._sign(method, path, query, request_headers, body)
            target = path + ("?" + self._canonical_query(query) if query else "")
            connection = self._connection()
            try:
                connection.request(method, target, body=body or None, headers=request_headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self._local.connection = None
                last_error = exc
                time.sleep(0.2 * (attempt + 1))
                continue
            response_headers = {k.lower(): v for k, v in response.getheaders()}
            if "date" in response_headers:
                self._note_clock(response_headers["date"])
            if response.status >= 500 or response.status == 429:
                last_error = StoreError(f"S3 {method} {key or '/'}: HTTP {response.status}")
                time.sleep(0.2 * (attempt + 1))
                continue
            return response.status, response_headers, data
        raise StoreError(f"the backend {self._display()} cannot be reached: {last_error}")

    def _display(self) -> str:
        return f"s3://{self.bucket}"

    def _note_clock(self, date: str) -> None:
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        self._clock_offset = server - time.time()

    @staticmethod
    def _failure(method: str, key: str, status: int, data: bytes) -> StoreError:
        code = ""
        try:
            code = ElementTree.fromstring(data).findtext("Code") or ""
        except ElementTree.ParseError:
            pass
        if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StoreError(f"access to the backend is denied ({code or status}) for {method} {key}",
                              hint="the team's credentials need s3:GetObject, s3:PutObject, s3:DeleteObject "
                                   "and s3:ListBucket on the bucket (docs/teams.md)")
        if code == "NoSuchBucket":
            return StoreError(f"the backend's bucket does not exist ({code})")
        return StoreError(f"S3 {method} {key}: HTTP {status} {code}".strip())

    def _sse_headers(self) -> dict[str, str]:
        headers = {}
        if self.sse:
            headers["x-amz-server-side-encryption"] = self.sse
        if self.kms_key:
            headers["x-amz-server-side-encryption-aws-kms-key-id"] = self.kms_key
        return headers

    # --- the store -------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def read(self, key: str) -> bytes | None:
        status, _headers, data = self._request("GET", self._key(key))
        if status == 404:
            return None
        if status != 200:
            raise self._failure("GET", key, status, data)
        return data

    def write(self, key: str, data: bytes) -> None:
        status, _headers, body = self._request("PUT", self._key(key), body=data, headers=self._sse_headers())
        if status != 200:
            raise self._failure("PUT", key, status, body)

    def create(self, key: str, data: bytes) -> bool:
        headers = {"If-None-Match": "*", **self._sse_headers()}
        status, _headers, body = self._request("PUT", self._key(key), body=data, headers=headers)
        if status in (409, 412):  # 409: a concurrent conditional write of the same key is in flight
            return False
        if status != 200:
            raise self._failure("PUT", key, status, body)
        return True

    def delete(self, key: str) -> None:
        status, _headers, body = self._request("DELETE", self._key(key))
        if status not in (200, 204, 404):
            raise self._failure("DELETE", key, status, body)

    def update(self, key: str, change: Update) -> bytes | None:
        """Compare-and-swap: the new value is written only if nobody wrote since it was read."""
        for attempt in range(UPDATE_ATTEMPTS):
            status, headers, data = self._request("GET", self._key(key))
            if status == 404:
                current, condition = None, {"If-None-Match": "*"}
            elif status == 200:
                current, condition = data, {"If-Match": headers.get("etag", "")}
            else:
                raise self._failure("GET", key, status, data)
            new = change(current)
            if new is None:
                return None
            status, _headers, body = self._request("PUT", self._key(key), body=new,
                                                   headers={**condition, **self._sse_headers()})
            if status == 200:
                return new
            if status not in (409, 412):
                raise self._failure("PUT", key, status, body)
            time.sleep(random.uniform(0.02, 0.1) * min(attempt + 1, 5))  # another writer won this round
        raise StoreBusy(f"the backend's {key} kept changing under {UPDATE_ATTEMPTS} attempts to update it")

    def _pages(self, prefix: str) -> Iterator[ElementTree.Element]:
        token = None
        while True:
            query = {"list-type": "2", "prefix": self._key(prefix)}
            if token:
                query["continuation-token"] = token
            status, _headers, data = self._request("GET", "", query=query)
            if status != 200:
                raise self._failure("LIST", prefix, status, data)
            root = ElementTree.fromstring(data)
            yield root
            namespace = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            token = root.findtext(f"{namespace}NextContinuationToken")
            if root.findtext(f"{namespace}IsTruncated") != "true" or not token:
                return

    def list(self, prefix: str = "") -> list[BlobInfo]:
        found = []
        for root in self._pages(prefix):
            namespace = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            for item in root.iter(f"{namespace}Contents"):
                key = item.findtext(f"{namespace}Key") or ""
                modified = item.findtext(f"{namespace}LastModified") or ""
                try:
                    stamp = datetime.datetime.fromisoformat(modified.replace("Z", "+00:00")).timestamp()
                except ValueError:
                    stamp = 0.0
                found.append(BlobInfo(key=key[len(self.prefix) + 1:], size=int(item.findtext(f"{namespace}Size") or 0),
                                      modified=stamp, etag=(item.findtext(f"{namespace}ETag") or "").strip('"')))
        return found

    def now(self) -> float:
        """The store's clock (from its last answer): object times are compared with it, never
        with this machine's, which may be off."""
        return time.time() + self._clock_offset


BlobStore = FileStore | S3Store
_STORES: dict[str, BlobStore] = {}
_LOCK = threading.Lock()


def open_store(url: str) -> BlobStore:
    """The store of a backend URL (one per URL and process)."""
    with _LOCK:
        if url not in _STORES:
            _STORES[url] = _open(url)
        return _STORES[url]


def _open(url: str) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = unquote(parsed.path)
        directory = Path(os.path.expanduser(path)) if path.startswith("~") else Path(path)
        return FileStore(directory / ROOT, url)
    if parsed.scheme == "s3":
        return S3Store(url)
    raise UnsupportedBackend(
        f"run records cannot be kept in the backend {parsed.scheme}://{parsed.netloc}: dstack-iac keeps them in "
        "file:// and s3:// backends (S3-compatible stores included)",
        hint="use an s3:// or file:// PULUMI_BACKEND_URL for a team's runs (docs/teams.md)")

