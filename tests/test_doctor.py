"""`iotpipe doctor` against machine states it must diagnose: no broker, a broker address
that is not a broker, a real Mosquitto that refuses the login, ports taken, a port missing,
serial permissions — each named with its fix, and exit status 1."""

from __future__ import annotations

import getpass
import grp
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from iotpipe.commands import doctor
from tests.conftest import Broker, Procs, free_port, port_open, wait_until

MOSQUITTO = "/usr/sbin/mosquitto"


def run_doctor(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IOTPIPE_")}
    clean["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")  # not the tester's own config file
    http = ["--http", f"127.0.0.1:{free_port()}"] if "--http" not in args else []
    return subprocess.run(
        [sys.executable, "-m", "iotpipe", "doctor", *http, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


def line(out: str, what: str) -> str:
    """The check's line and its fix line."""
    lines = out.splitlines()
    for i, text in enumerate(lines):
        if text.strip()[2:].startswith(what):
            fix = lines[i + 1] if i + 1 < len(lines) and "fix:" in lines[i + 1] else ""
            return text + "\n" + fix
    raise AssertionError(f"no {what!r} check in:\n{out}")


class _NotMqtt(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    """Something that is not an MQTT broker nor a dashboard: a plain HTTP server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotMqtt)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_no_broker_is_diagnosed_with_how_to_start_one(tmp_path: Path) -> None:
    port = free_port()
    done = run_doctor(tmp_path, "--broker", f"mqtt://127.0.0.1:{port}", "--port", str(port))
    assert done.returncode == 1
    found = line(done.stdout, "broker")
    assert "✗" in found and "cannot reach the broker" in found and "Connection refused" in found
    assert "fix: start it (`iotpipe broker`" in found
    assert "✓ mqtt port" in done.stdout  # free: `iotpipe broker` could use it
    assert "problem(s): broker" in done.stdout


def test_a_broker_url_with_the_wrong_port_is_diagnosed(tmp_path: Path, http_server: int) -> None:
    done = run_doctor(
        tmp_path, "--broker", f"mqtt://127.0.0.1:{http_server}", "--port", str(http_server)
    )
    assert done.returncode == 1
    assert "gave no MQTT answer" in line(done.stdout, "broker")
    assert "fix the port in --broker" in line(done.stdout, "broker")
    taken = line(done.stdout, "mqtt port")
    assert "✗" in taken and "is in use by something that is not the broker" in taken


@pytest.fixture
def locked_broker(procs: Procs, tmp_path: Path) -> Broker:
    """A real Mosquitto that takes only user `sensor` with password `right`."""
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwd), "sensor", "right"], check=True, timeout=30
    )
    port = free_port()
    conf = tmp_path / "locked.conf"
    conf.write_text(
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {passwd}\npersistence false\nlog_dest stderr\n"
    )
    proc = procs.start("locked-mosquitto", [MOSQUITTO, "-c", str(conf)])
    wait_until(lambda: port_open(port) or proc.popen.poll() is not None, 10, "mosquitto")
    assert proc.popen.poll() is None, proc.output()
    return Broker(port, tmp_path, proc)


def test_bad_credentials_are_diagnosed_against_a_real_password_file(
    tmp_path: Path, locked_broker: Broker
) -> None:
    url = locked_broker.url
    wrong = run_doctor(tmp_path, "--broker", url, "--mqtt-user", "sensor", "--mqtt-password", "no")
    assert wrong.returncode == 1
    found = line(wrong.stdout, "broker")
    assert "✗" in found and "refused the login" in found and "mosquitto_passwd" in found
    anonymous = run_doctor(tmp_path, "--broker", url)
    assert "refused the login" in line(anonymous.stdout, "broker")
    right = run_doctor(
        tmp_path,
        "--broker",
        url,
        "--port",
        str(locked_broker.port),
        env={"IOTPIPE_MQTT_USER": "sensor", "IOTPIPE_MQTT_PASSWORD": "right"},
    )
    assert f"✓ broker         logged in to {url} as sensor" in right.stdout, right.stdout
    assert "in use by the broker that answered above" in line(right.stdout, "mqtt port")


def test_credentials_from_the_config_file_yield_to_the_environment(
    tmp_path: Path, locked_broker: Broker
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'broker = "{locked_broker.url}"\n[doctor]\nmqtt-user = "sensor"\n')
    config.write_text(config.read_text() + 'mqtt-password = "right"\n')
    env = {"IOTPIPE_CONFIG": str(config)}
    assert "✓ broker" in run_doctor(tmp_path, env=env).stdout
    overridden = run_doctor(tmp_path, env={**env, "IOTPIPE_MQTT_PASSWORD": "stale"})
    assert "refused the login" in line(overridden.stdout, "broker")
    assert f"config file: {config}" in overridden.stdout


def test_a_healthy_machine_passes(tmp_path: Path, broker: Broker) -> None:
    done = run_doctor(tmp_path, "--broker", broker.url, "--port", str(broker.port))
    failed = [text for text in done.stdout.splitlines() if text.startswith("  ✗")]
    # Only the tester's own serial permissions may differ from machine to machine.
    assert all("serial access" in text for text in failed), done.stdout
    assert done.returncode == (1 if failed else 0)
    assert "✓ mosquitto" in done.stdout and "✓ broker" in done.stdout
    assert "✓ http port" in done.stdout


def test_a_taken_http_port_and_a_missing_mosquitto_are_diagnosed(
    tmp_path: Path, http_server: int
) -> None:
    done = run_doctor(
        tmp_path, "--http", f"127.0.0.1:{http_server}", "--mosquitto", str(tmp_path / "nope")
    )
    assert done.returncode == 1
    taken = line(done.stdout, "http port")
    assert "not an iotpipe dashboard" in taken and f"--http 127.0.0.1:{http_server + 1}" in taken
    assert "apt-get install mosquitto" in line(done.stdout, "mosquitto")


def test_a_serial_port_that_is_not_there_is_diagnosed(tmp_path: Path) -> None:
    done = run_doctor(tmp_path, "--serial", str(tmp_path / "ttyUSB9"))
    found = line(done.stdout, "boards")
    assert done.returncode == 1 and "✗" in found and "is not here" in found
    assert "iotpipe board ports --all" in found


@pytest.fixture
def plain_user(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A non-root user `ada`, and a dialout group whose members the test sets."""
    dialout = SimpleNamespace(gr_gid=20, gr_mem=[])
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getgroups", lambda: [1000])
    monkeypatch.setattr(doctor.pwd, "getpwuid", lambda uid: SimpleNamespace(pw_name="ada"))
    monkeypatch.setattr(grp, "getgrnam", lambda name: dialout)
    return dialout


def test_a_user_outside_dialout_is_told_to_join_it(plain_user: SimpleNamespace) -> None:
    found = doctor.check_serial_permissions(SimpleNamespace())
    assert found.level == doctor.FAIL
    assert found.fix == "sudo usermod -aG dialout ada, then log out and back in"


def test_a_user_just_added_to_dialout_is_told_to_log_in_again(
    plain_user: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain_user.gr_mem.append("ada")
    assert "log out and back in" in doctor.check_serial_permissions(SimpleNamespace()).fix
    monkeypatch.setattr(os, "getgroups", lambda: [1000, 20])
    assert doctor.check_serial_permissions(SimpleNamespace()).level == doctor.OK


def test_boards_are_found_by_path_by_serial_number_or_missed_by_auto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iotpipe import serialports

    tty = tmp_path / "ttyUSB0"
    tty.write_bytes(b"")
    plugged = [SimpleNamespace(device=str(tty), vid=0x10C4, pid=0xEA60, serial_number="0001")]
    monkeypatch.setattr(serialports, "_comports", lambda: plugged)
    assert doctor.check_boards(SimpleNamespace(serial=None)).detail == f"found {tty}"
    assert doctor.check_boards(SimpleNamespace(serial=["0001"])).level == doctor.OK
    assert doctor.check_boards(SimpleNamespace(serial=[str(tty)])).level == doctor.OK
    assert doctor.check_boards(SimpleNamespace(serial=["socket://h:1"])).level == doctor.OK
    assert doctor.check_boards(SimpleNamespace(serial=["0002"])).level == doctor.FAIL
    assert doctor.check_boards(SimpleNamespace(serial=["0001", str(tty)])).level == doctor.OK
    assert doctor.check_boards(SimpleNamespace(serial=["0001", "0002"])).level == doctor.FAIL
    plugged.clear()
    assert doctor.check_boards(SimpleNamespace(serial=None)).level == doctor.WARN
    assert doctor.check_boards(SimpleNamespace(serial=["auto"])).level == doctor.FAIL
