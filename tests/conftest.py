"""Real parts for every integration test: Mosquitto on a free loopback port, virtual
boards under the real MicroPython unix port on a pty, and the real iotpipe processes.

Every process a test starts is stopped by its PID when the test ends; its output is kept
in the test's tmp_path and printed when the test fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent


class FlagRecorder(argparse.ArgumentParser):
    """A parser that keeps the actions added to it: argparse lists them only privately."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.added: list[argparse.Action] = []  # before: __init__ adds --help
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.added.append(action)
        return action


VECTORS = ROOT / "tests" / "vectors" / "wire.json"
MQTT_VECTORS = ROOT / "tests" / "vectors" / "mqtt.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# A test's limit is what an idle machine needs; a loaded one (2 cores, 8 suites, CPU
# burners) gets at least 3 times that and 30 s: a wait polls, so only a failure pays.
WAIT_SCALE = 3.0
WAIT_MIN_S = 30.0


def wait_until(check: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    limit = max(timeout * WAIT_SCALE, WAIT_MIN_S)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {limit:.0f}s waiting for {what}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


@dataclass
class Procs:
    """Starts iotpipe (and other) processes and stops every one of them at teardown."""

    tmp: Path
    started: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def iotpipe(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        return self.start(name, [sys.executable, "-m", "iotpipe", *args], env)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Procs]:
    manager = Procs(tmp_path)
    yield manager
    manager.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for proc in manager.started:
            print(
                f"----- {proc.name} (exit {proc.popen.returncode}) -----\n{proc.output()[-4000:]}"
            )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@dataclass
class Broker:
    port: int
    data: Path
    proc: Proc
    insecure: bool = False

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def credentials(self, role: str) -> tuple[str, str]:
        """(user, password) of a role that `iotpipe broker` made on its first start."""
        body = json.loads((self.data / "credentials" / f"{role}.json").read_text())
        return str(body["user"]), str(body["password"])

    def env_for(self, role: str) -> dict[str, str]:
        """For a started iotpipe process: the password goes in the environment, as `up` does."""
        user, password = self.credentials(role)
        return {"IOTPIPE_MQTT_USER": user, "IOTPIPE_MQTT_PASSWORD": password}


def start_broker(
    procs: Procs,
    data: Path,
    port: int | None = None,
    insecure: bool = False,
    extra: tuple[str, ...] = (),
) -> Broker:
    """`iotpipe broker`: locked down (passwords and ACL) unless ``insecure``."""
    port = port or free_port()
    proc = procs.iotpipe(
        f"broker-{port}",
        "broker",
        "--port",
        str(port),
        "--data",
        str(data),
        "--insecure",
        "on" if insecure else "off",
        *extra,
    )
    wait_until(lambda: port_open(port) or proc.popen.poll() is not None, 10, "mosquitto")
    assert proc.popen.poll() is None, proc.output()
    return Broker(port, data, proc, insecure)


def start_tls_broker(procs: Procs, data: Path) -> tuple[Broker, int]:
    """The locked-down broker with an mqtts:// listener too (its CA in DATA/tls/ca.crt),
    and that listener's port."""
    tls = free_port()
    broker = start_broker(procs, data, extra=("--tls-port", str(tls)))
    wait_until(lambda: port_open(tls), 10, "the mqtts listener")
    return broker, tls


@pytest.fixture
def broker(procs: Procs, tmp_path: Path) -> Broker:
    """The explicit insecure mode, for the many tests that are about something other than
    access control (they publish and subscribe as they please); tests/test_security.py
    starts the locked-down default."""
    return start_broker(procs, tmp_path / "broker", insecure=True)


def start_virtual_board(
    procs: Procs, link: Path, device_id: str, rate: float = 20.0, *extra: str
) -> Proc:
    proc = procs.iotpipe(
        f"board-{device_id}",
        "board",
        "virtual",
        "--link",
        str(link),
        "--rate",
        str(rate),
        "--device-id",
        device_id,
        *extra,
    )
    wait_until(lambda: link.exists() or proc.popen.poll() is not None, 15, f"pty at {link}")
    assert proc.popen.poll() is None, proc.output()
    return proc


class Subscriber:
    """A plain MQTT subscriber, like `mosquitto_sub -v`, that records what it receives."""

    def __init__(
        self,
        port: int,
        topic: str,
        login: tuple[str, str] | None = None,
        session: str | None = None,
    ) -> None:
        """``session``: a client id whose session (and QoS 1 queue) the broker keeps, so
        what the broker acknowledged reaches the test across a broker restart too."""
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        if session is None:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        else:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=session, clean_session=False
            )
            self.client.reconnect_delay_set(0.1, 0.5)
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError(f"could not subscribe to {topic}")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def on(self, topic_suffix: str) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscribe(broker: Broker) -> Iterator[Callable[[str], Subscriber]]:
    made: list[Subscriber] = []

    def make(topic: str) -> Subscriber:
        sub = Subscriber(broker.port, topic)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def start_bridge(
    procs: Procs,
    tmp_path: Path,
    serial: Path | str,
    broker_url: str,
    *extra: str,
    name: str = "bridge",
    env: dict[str, str] | None = None,
) -> Proc:
    """`iotpipe bridge` with its spool in the test's own directory."""
    return procs.iotpipe(
        name,
        "bridge",
        "--serial",
        str(serial),
        "--broker",
        broker_url,
        "--spool",
        str(tmp_path / f"{name}-spool"),
        "--data",
        str(tmp_path),
        *extra,
        env=env,
    )


@pytest.fixture
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No IOTPIPE_… variable and no ~/.config file of the machine running the tests."""
    from iotpipe import configfile

    for name in list(os.environ):
        if name.startswith("IOTPIPE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    # Recorded as absent, so a value that `--config` puts there is removed afterwards.
    monkeypatch.setenv(configfile.ENV, "")
    monkeypatch.delenv(configfile.ENV)
    yield
    configfile.forget()
