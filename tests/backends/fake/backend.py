"""The `fake` backend: a whole backend in one module, to show what one is and to test the run
lifecycle without sshd. Its nodes are objects in this process; what they do is a `Scenario`
(set by the test, or from $FAKE_BACKEND_SCENARIO as JSON when run through the CLI).

Registered for a test run with DSTACK_IAC_BACKENDS=fake=tests.backends.fake.backend:FakeBackend.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import threading
import time
from typing import Any, ClassVar

from pydantic import BaseModel

from dstack_iac.backends.base import BaseBackend
from dstack_iac.errors import NodeLost, ProvisioningFailed
from dstack_iac.model.backend import OfferRequest
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.offers import Offer
from dstack_iac.model.plan import RunInputs, RunPlan

SCENARIO_ENV = "FAKE_BACKEND_SCENARIO"
REGISTRATION = "fake=tests.backends.fake.backend:FakeBackend"


class Scenario(BaseModel):
    """What goes wrong, per attempt (1-based): the program raises, the cloud has no capacity,
    a node cannot be reached, a node is lost, or the commands exit with a code."""

    program_error_on: list[int] = []
    no_capacity_on: list[int] = []
    unreachable_on: list[int] = []
    lost_on: list[int] = []
    exit_codes: dict[int, int] = {}  # attempt -> exit code of node 0 (default 0)
    block: bool = False  # the commands run until stopped
    bug_in_offers: bool = False  # an unexpected exception (a bug) while planning
    output: list[str] = ["fake output"]


class FakeSession:
    def __init__(self, backend: FakeBackend, endpoint: NodeEndpoint):
        self.backend = backend
        self.endpoint = endpoint
        self.node_dir = endpoint.node_dir
        self._stopped = threading.Event()
        self.uploaded: bytes | None = None
        self.extracted: dict[str, bytes] = {}
        self.commands: list[str] = []

    def upload(self, archive: bytes) -> None:
        self.uploaded = archive

    def extract(self, archive: bytes, directory: str) -> None:
        self.extracted[directory] = archive
        if directory == self.endpoint.working_dir:
            self.uploaded = archive

    def command_output(self, command: str) -> str:
        self.commands.append(command)
        return ""

    def run_with_secret(self, command: str, variable: str, username, password) -> None:
        self.commands.append(command)

    def run_script(self, script: str, emit, prefix: str, runtime=None, on_start=None) -> int:
        scenario, attempt = self.backend.scenario, self.backend.attempt
        self.backend.scripts.append(script)
        if on_start is not None:
            on_start()
        for line in scenario.output:
            emit(prefix + line)
        if attempt in scenario.lost_on:
            raise NodeLost(f"node {self.endpoint.rank} (fake) stopped answering")
        if scenario.block:
            self._stopped.wait(60)
            return 143
        return scenario.exit_codes.get(attempt, 0) if self.endpoint.rank == 0 else 0

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self, grace: float = 3.0) -> None:
        self._stopped.set()
        self.backend.stops += 1

    def close(self) -> None:
        self.backend.closed += 1


class FakeBackend(BaseBackend):
    name: ClassVar[str] = "fake"
    summary: ClassVar[str] = "nodes that are objects of the test process"

    def __init__(self) -> None:
        self.scenario = Scenario.model_validate(json.loads(os.environ.get(SCENARIO_ENV, "{}")))
        self.attempt = 0
        self.attempted_at: list[float] = []  # time.monotonic() of each attempt's cluster
        self.statuses: list[str] = []  # the run's recorded status as each attempt declares its cluster
        self.scripts: list[str] = []
        self.stops = 0
        self.closed = 0

    def offers(self, request: OfferRequest) -> list[Offer]:
        if self.scenario.bug_in_offers:
            return [1 / 0]  # type: ignore[list-item]
        return [Offer(backend=self.name, region="here", instance_type="object", cpus=2, memory_gb=8, disk_gb=100,
                      price=0.0)]

    def node_python(self, version: str | None) -> str:
        return sys.executable

    def node_user(self) -> str:
        return getpass.getuser()

    def declare_cluster(self, name: str, plan: RunPlan, inputs: RunInputs) -> Any:
        import pulumi

        self.attempt += 1
        self.attempted_at.append(time.monotonic())
        from dstack_iac.state import runs

        record = runs.load(name) or runs.load(plan.run_name)
        self.statuses.append(record.status.value if record else "")
        if self.attempt in self.scenario.program_error_on:
            raise RuntimeError("a deliberate bug in the fake cluster component")
        if self.attempt in self.scenario.no_capacity_on:
            raise ProvisioningFailed("the fake cloud has no capacity right now", capacity=True)

        class FakeCluster(pulumi.ComponentResource):
            def __init__(self) -> None:
                super().__init__("fake:index:Cluster", name, None, None)
                self.nodes = pulumi.Output.from_input([
                    {"rank": rank, "address": f"fake-{rank}", "private_address": f"10.0.0.{rank + 1}", "port": 22,
                     "user": inputs.user, "host_key": "ssh-ed25519 FAKE", "working_dir": f"/fake/{rank}/workflow"}
                    for rank in range(plan.nodes)])
                self.register_outputs({"nodes": self.nodes})

        return FakeCluster()

    def connect(self, endpoint: NodeEndpoint, inputs: RunInputs) -> FakeSession:
        if self.attempt in self.scenario.unreachable_on:
            raise ConnectionRefusedError(f"fake node {endpoint.rank} refused the connection")
        return FakeSession(self, endpoint)
