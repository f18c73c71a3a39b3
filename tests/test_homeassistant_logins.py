"""`iotpipe login`: logins for Home Assistant, Node-RED, Telegraf, against the real
locked-down Mosquitto — each role does what docs/security.md says and nothing else, the
login outlives broker restarts, and a data directory made by release 1b120ab takes one."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, Broker, Procs, start_broker, wait_until
from tests.test_security import Client


def login(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "iotpipe", "login", *(str(a) for a in args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def added(data: Path, name: str, role: str) -> tuple[str, str]:
    done = login("add", name, "--role", role, "--data", data)
    assert done.returncode == 0, done.stderr
    body = json.loads((data / "credentials" / "logins" / f"{name}.json").read_text())
    assert body["password"] in done.stdout  # shown this once, to be given to the client
    return str(body["user"]), str(body["password"])


@pytest.fixture
def locked(procs: Procs, tmp_path: Path) -> Broker:
    return start_broker(procs, tmp_path / "broker")


def test_home_assistant_reads_boards_uses_discovery_and_sends_commands_only(
    locked: Broker,
) -> None:
    ha_login = added(locked.data, "homeassistant", "homeassistant")
    device = f"dev-{uuid.uuid4().hex[:8]}"
    ha = Client(locked.port, ha_login)  # no restart: the running broker reloaded
    bridge = Client(locked.port, locked.credentials("bridge"))
    try:
        assert ha.accepted
        ha.subscribe("iotpipe/#")
        bridge.subscribe(f"iotpipe/{device}/cmd")
        assert not bridge.publish(f"iotpipe/{device}/telemetry", b"21.5").is_failure
        assert not bridge.publish(f"iotpipe/{device}/reply", b"{}").is_failure
        wait_until(lambda: len(ha.messages) >= 2, 10, "the board's messages at Home Assistant")
        assert not ha.publish("homeassistant/status", b"online").is_failure  # its birth
        assert not ha.publish(f"iotpipe/{device}/cmd", b'{"cmd":"read"}').is_failure
        wait_until(lambda: bridge.messages, 10, "Home Assistant's command at the bridge")
        for kind in ("telemetry", "status", "meta", "event", "reply"):
            assert ha.publish(f"iotpipe/{device}/{kind}").is_failure, kind
    finally:
        ha.close()
        bridge.close()


def test_a_reader_only_reads_and_a_writer_also_sends_commands(locked: Broker) -> None:
    reader = Client(locked.port, added(locked.data, "telegraf", "reader"))
    writer = Client(locked.port, added(locked.data, "nodered", "writer"))
    try:
        assert reader.publish("iotpipe/x/cmd").is_failure
        assert reader.publish("homeassistant/status").is_failure
        assert not writer.publish("iotpipe/x/cmd", b"{}").is_failure
        assert writer.publish("iotpipe/x/telemetry").is_failure
        assert writer.publish("homeassistant/status").is_failure
    finally:
        reader.close()
        writer.close()


def test_a_login_outlives_restarts_until_it_is_removed(locked: Broker, procs: Procs) -> None:
    creds = added(locked.data, "homeassistant", "homeassistant")
    path = locked.data / "credentials" / "logins" / "homeassistant.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    listed = login("list", "--data", locked.data)
    assert "homeassistant" in listed.stdout and creds[1] not in listed.stdout
    again = login("add", "homeassistant", "--role", "homeassistant", "--data", locked.data)
    assert "exists" in again.stdout and creds[1] not in again.stdout  # the same login
    locked.proc.stop()
    restarted = start_broker(procs, locked.data)  # passwd and acl written afresh
    assert Client(restarted.port, creds).accepted
    done = login("remove", "homeassistant", "--data", locked.data)
    assert done.returncode == 0 and "reload" in done.stdout, done.stdout
    assert not Client(restarted.port, creds).accepted


def test_bad_names_and_roles_are_refused_with_a_reason(locked: Broker) -> None:
    for args, says in [
        (("add", "iotpipe-bridge", "--role", "reader"), "iotpipe's own"),
        (("add", "bad name", "--role", "reader"), "must match"),
        (("add", "ha"), "needs --role"),
        (("remove", "nobody"), "no login 'nobody'"),
    ]:
        done = login(*args, "--data", locked.data)
        assert done.returncode == 1 and says in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert added(locked.data, "ha", "reader")
    done = login("add", "ha", "--role", "writer", "--data", locked.data)
    assert done.returncode == 1 and "exists with role 'reader'" in done.stderr


def made_by_1b120ab(tmp_path: Path, data: Path) -> None:
    """The broker data directory that release 1b120ab's iotpipe/broker/auth.py writes (its roles
    and a Wi-Fi board's login), made by that very code, run in a child process."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", "1b120ab:broker/auth.py"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if source.returncode != 0:
        pytest.skip(f"release 1b120ab is not in this clone's history: {source.stderr}")
    old = tmp_path / "auth_1b120ab.py"
    old.write_text(source.stdout)
    script = (
        f"import runpy; ns = runpy.run_path({str(old)!r}); "
        f"ns['ensure'](__import__('pathlib').Path({str(data)!r}), 'iotpipe', 'homeassistant'); "
        f"ns['add_board'](__import__('pathlib').Path({str(data)!r}), 'garden')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_a_data_directory_from_release_1b120ab_takes_a_login(tmp_path: Path, procs: Procs) -> None:
    data = tmp_path / "broker"
    made_by_1b120ab(tmp_path, data)
    assert not (data / "credentials" / "announcer.json").exists()
    ha_login = added(data, "homeassistant", "homeassistant")  # before any new broker start
    broker = start_broker(procs, data)
    for role in ("bridge", "dashboard", "reader", "announcer"):
        assert Client(broker.port, broker.credentials(role)).accepted, role
    garden = json.loads((data / "credentials" / "boards" / "garden.json").read_text())
    assert Client(broker.port, (garden["user"], garden["password"])).accepted
    assert Client(broker.port, ha_login).accepted
