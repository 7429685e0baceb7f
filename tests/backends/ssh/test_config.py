"""`type: fleet` files: dstack's SSH-fleet format, normalised, with positioned errors (as for tasks),
cloud-fleet fields refused, and the editor schema covering it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dstack_iac.backends.ssh.config import FleetConfiguration
from dstack_iac.cli.app import app

runner = CliRunner()

GOOD = """type: fleet
name: lab
placement: cluster
env:
  - HTTP_PROXY=http://proxy:3128
ssh_config:
  user: ubuntu
  identity_file: ~/.ssh/lab_key
  proxy_jump:
    hostname: bastion.example.com
    user: jumper
    identity_file: keys/jump
  hosts:
    - 10.0.0.1
    - hostname: 10.0.0.2
      port: 2222
      user: admin
      identity_file: /keys/admin
      internal_ip: 192.168.0.2
      blocks: auto
"""


def validate(tmp_path, monkeypatch, text: str):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "fleet.dstack.yml").write_text(text)
    result = runner.invoke(app, ["validate", "-f", "fleet.dstack.yml", "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_a_fleet_file_is_normalised(tmp_path, monkeypatch):
    code, answer = validate(tmp_path, monkeypatch, GOOD)
    assert code == 0, answer
    fleet = FleetConfiguration.model_validate(answer["configuration"])
    one, two = fleet.resolved_hosts(tmp_path)
    assert (one.hostname, one.port, one.user, one.identity_file, one.blocks) == \
           ("10.0.0.1", 22, "ubuntu", str(tmp_path / ".ssh" / "lab_key"), 1)
    assert (two.port, two.user, two.identity_file, two.internal_ip, two.blocks) == \
           (2222, "admin", "/keys/admin", "192.168.0.2", "auto")
    # The jump host's key is relative to the file's directory; everyone goes through it.
    assert one.proxy_jump.identity_file == str(tmp_path / "keys" / "jump") and one.proxy_jump.port == 22
    assert fleet.env == {"HTTP_PROXY": "http://proxy:3128"}


@pytest.mark.parametrize("body,line,field,message", [
    ("type: fleet\nname: lab\nnodes: 2\nssh_config: {user: u, identity_file: k, hosts: [h]}\n", 3, "nodes",
     "nodes is a field of dstack's cloud fleets: dstack-iac provisions SSH fleets only"),
    ("type: fleet\nname: lab\nbackends: [aws]\nssh_config: {user: u, identity_file: k, hosts: [h]}\n", 3, "backends",
     "backends is a field of dstack's cloud fleets"),
    ("type: fleet\nname: lab\nresources: {gpu: 24GB}\n", 1, "type", "dstack-iac provisions SSH fleets only"),
    ("type: fleet\nname: lab\nssh_config:\n  identity_file: k\n  hosts: [h]\n", 5, "ssh_config.hosts[0]",
     "host h: no user to log in as"),
    ("type: fleet\nname: lab\nssh_config:\n  user: u\n  hosts: [h]\n", 5, "ssh_config.hosts[0]",
     "host h: no identity_file"),
    ("type: fleet\nname: lab\nssh_config:\n  user: u\n  identity_file: k\n  hosts:\n    - a\n    - hostname: a\n"
     "      port: 22\n", 8, "ssh_config.hosts[1]", "host a:22 is listed twice"),
    ("type: fleet\nname: lab\nssh_config:\n  user: u\n  identity_file: k\n  hosts:\n    - hostname: a\n"
     "      blocks: 0\n", 8, "ssh_config.hosts[0].blocks", "blocks must be a whole number of at least 1"),
    ("type: fleet\nname: lab\nssh_config:\n  user: u\n  identity_file: k\n  hosts:\n    - hostname: a\n"
     "      internal_ip: ten\n", 8, "ssh_config.hosts[0].internal_ip", "internal_ip 'ten' is not an IP address"),
    ("type: fleet\nname: lab\nssh_config:\n  user: u\n  identity_file: k\n  port: 70000\n  hosts: [a]\n", 6,
     "ssh_config.port", "port 70000 is outside 1..65535"),
    ("type: fleet\nname: lab\nssh_config:\n  user: u\n  identity_file: k\n  hosts: []\n", 6, "ssh_config.hosts",
     "a fleet needs at least one host"),
    ("type: fleet\nname: Lab\nssh_config: {user: u, identity_file: k, hosts: [a]}\n", 2, "name",
     "'Lab' is not a valid name"),
    ("type: fleet\nname: lab\nssh_config: {user: u, identity_file: k, hosts: [a], network: ten}\n", 3,
     "ssh_config.network", "network 'ten' is not a CIDR block"),
    ("type: fleet\nname: lab\nplacement: spread\nssh_config: {user: u, identity_file: k, hosts: [a]}\n", 3,
     "placement", "Input should be 'any' or 'cluster'"),
    ("type: fleet\nname: lab\nssh_config: {user: u, identity_file: k, hosts: [a], hostz: 1}\n", 3,
     "ssh_config.hostz", "unknown field 'hostz'"),
])
def test_invalid_fleet_files_are_positioned(tmp_path, monkeypatch, body, line, field, message):
    code, answer = validate(tmp_path, monkeypatch, body)
    assert code == 2, answer
    [error] = answer["errors"][:1]
    assert (error["line"], error["field"]) == (line, field), error
    assert error["message"].startswith(message), error


def test_the_schema_covers_fleets():
    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.stdout)
    assert {"$ref": "#/$defs/FleetConfiguration"} in schema["oneOf"]
    fleet = schema["$defs"]["FleetConfiguration"]
    assert set(fleet["properties"]) == {"type", "name", "ssh_config", "placement", "blocks", "env", "resources"}

    def described(definition: dict, where: str) -> None:
        for name, field in definition.get("properties", {}).items():
            assert field.get("description"), f"{where}.{name} has no description"

    described(fleet, "fleet")
    for name in ("SshConfig", "HostSpec", "ProxyJump"):
        described(schema["$defs"][name], name)
