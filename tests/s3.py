"""A real S3 API for the tests: moto's server (a separate process, real HTTP on 127.0.0.1),
started once per session, stopped by its pid. A test asks for `s3_backend`: a fresh bucket and
the environment that points dstack-iac and the engine at it, as a team's would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MotoServer:
    port: int
    process: subprocess.Popen
    buckets: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self) -> str:
        name = f"team-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found, token = [], None
        while True:
            args = {"Bucket": bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = self.client().list_objects_v2(**args)
            found += [item["Key"] for item in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return found

    def backend_url(self, bucket: str) -> str:
        # As a team writes it: the engine (gocloud.dev) and dstack-iac read the same parameters.
        return f"s3://{bucket}?endpoint=127.0.0.1:{self.port}&disableSSL=true&s3ForcePathStyle=true"


def start_moto() -> MotoServer:
    port = _free_port()
    env = {**os.environ, **CREDENTIALS}
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return MotoServer(port, process)
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("moto's server did not start")
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto's server did not answer within 30 s")


def stop_moto(server: MotoServer) -> None:
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


def stacks_in(server: MotoServer, bucket: str) -> list[str]:
    return [key for key in server.keys(bucket, ".pulumi/stacks/") if key.endswith(".json")]


@pytest.fixture(scope="session")
def moto_server():
    """The S3 server of the session. After the suite, no bucket may hold a stack."""
    server = start_moto()
    try:
        yield server
        left = {bucket: stacks_in(server, bucket) for bucket in server.buckets}
        assert not any(left.values()), f"stacks were left in the S3 backend: {left}"
    finally:
        stop_moto(server)


@pytest.fixture
def s3_backend(moto_server, monkeypatch):
    """A fresh bucket as this test's Pulumi backend (and the team's shared passphrase)."""
    bucket = moto_server.new_bucket()
    url = moto_server.backend_url(bucket)
    env = {**CREDENTIALS, "PULUMI_BACKEND_URL": url, "PULUMI_CONFIG_PASSPHRASE": "the-team-s-passphrase"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {"server": moto_server, "bucket": bucket, "url": url, "env": env}
