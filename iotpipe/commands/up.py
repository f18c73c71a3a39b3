"""`iotpipe up`: the whole pipeline on one machine, in one command.

Mosquitto, the dashboard, N virtual boards (and the boards on --serial), one bridge for
all of them and virtual boards on Wi-Fi (``--virtual-wifi``: no bridge, each with its own broker
login), each a child process started in that order and waited for; progress is printed as
it happens; Ctrl-C (or SIGTERM) stops every child this command started.

The dashboard comes right after the broker and counts as ready only once its persistent
session holds its subscriptions (``/healthz`` says ``"subscribed": true``): from then on
the broker keeps every reading for it, so the history starts at each board's seq 0. The
data directory and the log directory are 0700 and each log 0600: logs name devices and
the broker's users, and the history is nobody else's business.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from iotpipe.broker import auth
from iotpipe.broker.auth import Credentials
from iotpipe.commands.supervise import Child, Supervisor, iotpipe_argv
from iotpipe.endpoints import HostPort
from iotpipe.errors import UserError
from iotpipe.settings import add_settings

FIRST_READING_TIMEOUT_S = 20.0


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(
        parser,
        "virtual",
        "virtual-wifi",
        "serial",
        "mqtt-port",
        "http",
        "data",
        "base-topic",
        "rate",
        "insecure",
        "log-level",
    )


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _subscribed(url: str) -> bool:
    """The dashboard's /healthz says its broker session holds its subscriptions."""
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(json.loads(response.read()).get("subscribed"))
    except urllib.error.HTTPError as exc:  # 503: its store cannot write, yet subscribed
        try:
            return bool(json.loads(exc.read()).get("subscribed"))
        except ValueError:
            return False
    except (OSError, ValueError):
        return False


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def private_log(path: Path) -> Path:
    """A log file only its owner can read (the children append to it)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(path, 0o600)
    return path


def _running_for(seconds: float) -> Callable[[], bool]:
    """Ready once it has lived this long (a bridge says nothing until its board does)."""
    started = time.monotonic()
    return lambda: time.monotonic() - started > seconds


def _check_ports(args: argparse.Namespace) -> None:
    if not _port_free(args.mqtt_port):
        raise UserError(
            f"MQTT port {args.mqtt_port} is already in use (a system Mosquitto? stop it with "
            "`sudo systemctl disable --now mosquitto`) — or pass --mqtt-port 1884"
        )
    http: HostPort = args.http
    if not _port_free(http.port):
        raise UserError(
            f"HTTP port {http.port} is already in use — pass --http {http.host}:{http.port + 1}"
        )


class FirstReadings:
    """Watches telemetry so `up` can say when each board's first reading has arrived."""

    def __init__(self, port: int, base: str, login: Credentials | None) -> None:
        from iotpipe import transport
        from iotpipe.counters import Counters
        from iotpipe.endpoints import BrokerURL

        self.seen: dict[str, dict[str, float]] = {}
        self.changed = threading.Condition()
        broker = transport.Login(
            BrokerURL("mqtt", "127.0.0.1", port),
            login.user if login else None,
            login.password if login else None,
        )
        self.session = transport.Session(transport.Options(broker), "", Counters("iotpipe_up"))
        self.session.handle(f"{base}/+/telemetry", self._on_message, qos=0)
        self.session.start_thread()

    def _on_message(self, msg: object) -> None:
        try:
            body = json.loads(msg.payload)  # type: ignore[attr-defined]
            device, metrics = str(body["device"]), dict(body["metrics"])
        except (ValueError, KeyError, TypeError):
            return
        with self.changed:
            if device not in self.seen:
                self.seen[device] = metrics
                self.changed.notify_all()

    def wait(self, count: int, timeout: float, say: Callable[[str], None]) -> None:
        deadline = time.monotonic() + timeout
        shown: set[str] = set()
        with self.changed:
            while len(shown) < count and time.monotonic() < deadline:
                for device, metrics in self.seen.items():
                    if device not in shown:
                        shown.add(device)
                        values = "  ".join(f"{k}={v:g}" for k, v in metrics.items())
                        say(f"  ✓ first reading from {device}: {values}")
                self.changed.wait(0.5)
        if len(shown) < count:
            say(
                f"  … {count - len(shown)} board(s) have not sent a reading yet; "
                "see the bridge logs"
            )

    def close(self) -> None:
        self.session.stop_thread()


def _role_env(args: argparse.Namespace, role: str) -> dict[str, str]:
    """Each child logs in as its own role, with the password in its environment."""
    if args.insecure:
        return {}
    return auth.load_role(args.data / "broker", role).env()


def _start_wifi_boards(sup: Supervisor, args: argparse.Namespace, logs: Path) -> int:
    """The firmware in its `mqtt` transport, each board logging in as itself, the way a
    board on Wi-Fi does once `iotpipe board deploy --transport mqtt` set it up."""
    from iotpipe.board.login import make_login

    broker_url = f"mqtt://127.0.0.1:{args.mqtt_port}"
    for n in range(1, args.virtual_wifi + 1):
        device = f"wifi-{n}"
        env = {} if args.insecure else make_login(args.data, device, show=False)[0].env()
        argv = iotpipe_argv(
            "board", "virtual", "--transport", "mqtt", "--broker", broker_url,
            "--base-topic", args.base_topic, "--rate", str(args.rate), "--device-id", device,
        )  # fmt: skip
        sup.start(
            Child(
                device,
                argv,
                _running_for(0.5),
                private_log(logs / f"{device}.log"),
                env=env,
            ),
            10,
            f"virtual board on Wi-Fi → {broker_url}",
        )
    return int(args.virtual_wifi)


def _save_sessions(broker: Child) -> None:
    """Mosquitto writes its sessions to disk only every ``autosave_interval``; SIGUSR1 asks
    for it now, so the dashboard's new subscription outlives a broker killed in its first
    minute (restarted from its file, it would not know the dashboard wants readings)."""
    if broker.popen is not None and broker.alive():  # `iotpipe broker` exec'ed mosquitto
        broker.popen.send_signal(signal.SIGUSR1)


def _start_all(sup: Supervisor, args: argparse.Namespace, logs: Path) -> int:
    data: Path = args.data
    broker_url = f"mqtt://127.0.0.1:{args.mqtt_port}"
    common = ["--base-topic", args.base_topic, "--log-level", args.log_level]
    broker = Child(
        "broker",
        iotpipe_argv(
            "broker",
            "--port",
            str(args.mqtt_port),
            "--data",
            str(data / "broker"),
            "--base-topic",
            args.base_topic,
            "--insecure",
            "on" if args.insecure else "off",
        ),
        lambda: _port_open(args.mqtt_port),
        private_log(logs / "broker.log"),
    )
    sup.start(broker, 10, broker_url)
    http: HostPort = args.http
    sup.start(
        Child(
            "dashboard",
            iotpipe_argv(
                "dashboard",
                "--broker",
                broker_url,
                "--http",
                str(http),
                "--data",
                str(data / "dashboard"),
                *common,
            ),
            lambda: _subscribed(http.url + "healthz"),
            private_log(logs / "dashboard.log"),
            env=_role_env(args, "dashboard"),
        ),
        60,
        f"{http.url} (subscribed: the broker keeps every reading for it)",
    )
    _save_sessions(broker)
    ports: list[str] = list(args.serial or [])
    count = args.virtual if args.virtual is not None else (0 if ports else 1)
    for n in range(1, count + 1):
        device, link = f"virtual-{n}", data / "boards" / f"virtual-{n}.tty"
        link.parent.mkdir(parents=True, exist_ok=True)
        sup.start(
            Child(
                device,
                iotpipe_argv(
                    "board",
                    "virtual",
                    "--link",
                    str(link),
                    "--rate",
                    str(args.rate),
                    "--device-id",
                    device,
                ),
                link.exists,
                private_log(logs / f"{device}.log"),
            ),
            20,
            f"virtual board on {link}",
        )
        ports.append(str(link))
    if ports:  # one bridge serves every board, each port with its own spool and status
        serial = [arg for port in ports for arg in ("--serial", port)]
        bridges = str(data / "bridges")
        sup.start(
            Child(
                "bridge",
                iotpipe_argv("bridge", *serial, "--broker", broker_url, "--data", bridges, *common),
                _running_for(0.5),
                private_log(logs / "bridge.log"),
                env=_role_env(args, "bridge"),
            ),
            10,
            f"{len(ports)} port(s) → {broker_url}",
        )
    wifi = _start_wifi_boards(sup, args, logs)
    if not args.insecure:  # it follows the boards' own logins, which insecure mode lacks
        argv = iotpipe_argv(
            "announce", "--broker", broker_url, "--data", str(data / "broker"), *common
        )
        sup.start(
            Child(
                "announce",
                argv,
                _running_for(0.5),
                private_log(logs / "announce.log"),
                env=_role_env(args, "announcer"),
            ),
            10,
            "Wi-Fi boards → Home Assistant discovery",
        )
    return len(ports) + wifi


def say(text: str) -> None:
    print(text, flush=True)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    _check_ports(args)
    private_dir(args.data)
    logs = private_dir(args.data / "logs")
    say(f"iotpipe up — data in {args.data}, logs in {logs}")
    sup = Supervisor(say)
    # Explicitly, also for SIGINT: a shell starting `up &` from a script ignores SIGINT.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    watcher: FirstReadings | None = None
    try:
        boards = _start_all(sup, args, logs)
        reader = None if args.insecure else auth.load_role(args.data / "broker", "reader")
        watcher = FirstReadings(args.mqtt_port, args.base_topic, reader)
        watcher.wait(boards, FIRST_READING_TIMEOUT_S, say)
        login = "" if reader is None else f" -u {reader.user} -P {shlex.quote(reader.password)}"
        token = (args.data / "dashboard" / "api-token").read_text().strip()
        say(
            f"\nDashboard: {args.http.url}\n"
            f"Send commands after logging in once: {args.http.url}login?token={token}\n"
            f"Watch raw MQTT: mosquitto_sub -p {args.mqtt_port}{login} "
            f"-t '{args.base_topic}/#' -v\n"
            "Press Ctrl-C to stop everything."
        )
        while True:
            time.sleep(0.5)
            sup.watch_once()
    except KeyboardInterrupt:
        say("\nstopping…")
    finally:
        if watcher is not None:
            watcher.close()
        sup.stop_all()
    say("stopped.")
    return 0
