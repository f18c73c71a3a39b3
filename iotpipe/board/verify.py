"""After `iotpipe board deploy --transport mqtt`: wait for the board on the broker.

A board on Wi-Fi no longer answers on its serial port, so the deploy watches the broker
instead, logged in as the read-only ``reader`` role from the broker's data directory
(``--broker-data``). It subscribes to ``<base>/<device>/meta`` before the board's last
reset and waits for a meta delivered live: one the broker sends with the retain flag clear
was published after the subscription, so it comes from the firmware just copied, not from
an earlier run. :class:`Watch` is the mechanism; :class:`Check` decides what deploy says.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from iotpipe import topics
from iotpipe.broker import auth
from iotpipe.endpoints import BrokerURL
from iotpipe.errors import UserError
from iotpipe.mqttlogin import Login, LoginFailed, connect
from iotpipe.mqttwire import meta as mqttwire_meta

log = logging.getLogger(__name__)

WAIT_S = 60.0
PROGRESS_EVERY_S = 10.0
SUBSCRIBE_TIMEOUT_S = 5.0
SESSION_S = 300  # how long the broker keeps the watch's session over a dropped connection


@dataclass(frozen=True, slots=True)
class Meta:
    """What the board said about itself, from its meta payload."""

    device: str
    fw: str
    board: str
    sensors: list[str]
    interval_ms: int


def parse_meta(payload: bytes) -> Meta | None:
    """The meta payload the firmware publishes (firmware/payload.py), read by the MQTT
    contract; None if it is not one or does not name the device and its interval."""
    try:
        meta = mqttwire_meta.parse_meta(payload)
    except topics.PayloadRejected:
        return None
    if meta.device is None or meta.interval_ms is None:
        return None
    return Meta(meta.device, meta.fw, meta.board, meta.sensors, meta.interval_ms)


def reader_login(broker_dir: Path, broker: BrokerURL, ca: Path | None = None) -> Login | None:
    """The ``reader`` role's login in the broker's data directory, if there is one."""
    try:
        creds = auth.load_role(broker_dir, "reader")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Login(broker, creds.user, creds.password, ca)


class NotChecked(Exception):
    """The broker cannot be watched from here; ``problem`` and ``fix`` say why."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} — {fix}")
        self.problem = problem
        self.fix = fix


class Watch:
    """A reader subscribed to one device's meta, keeping the first live one."""

    def __init__(self, login: Login, base: str, device: str) -> None:
        self.device = device
        self.topic = topics.topic(base, device, "meta")
        self._found: Meta | None = None
        self._arrived = threading.Event()
        # A session the broker keeps while paho reconnects after a drop: the meta the board
        # publishes in that gap waits in it (QoS 1), instead of being lost to the wait.
        self.client_id = f"iotpipe-deploy-{device}-{secrets.token_hex(4)}"
        try:
            self.session = connect(login, client_id=self.client_id, session_expiry_s=SESSION_S)
        except LoginFailed as exc:
            raise NotChecked(exc.problem, exc.fix) from None
        self.client = self.session.client
        # Subscribed now and after every reconnect (the session may have expired meanwhile).
        self.session.handle(self.topic, self._on_message)
        self.session.start_thread()  # pings the broker while mpremote copies for minutes
        if not self.session.subscribed.wait(SUBSCRIBE_TIMEOUT_S):
            said = self.session.refused.get(self.topic, "no answer")
            self.close()
            raise NotChecked(
                f"the broker did not let the reader subscribe to {self.topic} ({said})",
                "check the ACL the broker reads (DATA/acl) grants the reader the base topic",
            )

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        if msg.retain or self._arrived.is_set():
            return  # the retained one is from an earlier run
        meta = parse_meta(bytes(msg.payload))
        if meta is None or meta.device != self.device:
            log.debug("ignored a meta on %s that does not name %s", msg.topic, self.device)
            return
        self._found = meta
        self._arrived.set()

    def forget(self) -> None:
        """Drop what arrived so far: the board is stopped, what comes next is new."""
        self._found = None
        self._arrived.clear()

    def wait(self, seconds: float = WAIT_S) -> Meta | None:
        """The board's live meta, or None after ``seconds``; says how long it waits."""
        deadline = time.monotonic() + seconds
        print(f"waiting up to {seconds:g} s for {self.device} on the broker …", flush=True)
        while True:
            left = deadline - time.monotonic()
            if self._arrived.wait(max(0.0, min(PROGRESS_EVERY_S, left))):
                return self._found
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            print(f"  … not yet ({left:.0f} s left)", flush=True)

    def close(self) -> None:
        self.session.end_thread()  # nothing left on the broker


def wait_seconds(text: str) -> float:
    """``--wait``: 0 skips the check."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} must be seconds from 0 to 3600")
    return value


class Check:
    """What `iotpipe board deploy` does about the board's last step: for a Wi-Fi board with
    the reader's login at hand, watch for it on the broker; otherwise say where to look.
    A serial board (``mqtt`` False) is checked on its port by deploy itself."""

    def __init__(
        self,
        config: dict[str, Any],
        broker_dir: Path | None,
        wait_s: float,
        ca: Path | None = None,
    ) -> None:
        self.config = config
        self.mqtt = config.get("transport") == "mqtt"
        self.wait_s = wait_s
        self.watch: Watch | None = None
        self.reader_file = "DATA/credentials/reader.json"
        if not self.mqtt or broker_dir is None or wait_s <= 0:
            return
        folder = auth.broker_data(broker_dir)
        reader = reader_login(folder, self.url, ca)
        self.reader_file = str(auth.credentials_dir(folder) / "reader.json")
        if reader is None:
            return
        try:
            self.watch = Watch(reader, config["base_topic"], config["device_id"])
        except NotChecked as exc:
            # Before the board is touched: a broker this machine cannot reach is usually
            # one the board cannot reach either (not running, wrong address or port).
            raise UserError(
                f"cannot check that {config['device_id']} comes online: {exc.problem} — "
                f"{exc.fix}; the board was not touched. Deploy with --wait 0 to leave the "
                "check out (a broker only the board can reach)"
            ) from None

    @property
    def url(self) -> BrokerURL:
        scheme = "mqtts" if self.config.get("mqtt_ca") else "mqtt"
        return BrokerURL(scheme, self.config["mqtt_host"], self.config["mqtt_port"])

    def __enter__(self) -> Check:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.watch is not None:
            self.watch.close()

    def board_stopped(self) -> None:
        if self.watch is not None:
            self.watch.forget()

    def finish(self, port: str) -> int:
        """After the board's last reset: 0 once it is seen, else a UserError."""
        device = self.config["device_id"]
        print("its config.json holds the Wi-Fi and MQTT passwords in clear (docs/security.md)")
        if self.watch is None:
            self._say_where_it_went()
            return 0
        meta = self.watch.wait(self.wait_s)
        if meta is None:
            raise UserError(self._advice(port))
        print(
            f"{device} is online via the broker at {self.url}: iotpipe firmware {meta.fw} on "
            f"{meta.board}, sensors {', '.join(meta.sensors) or 'none'}, a reading every "
            f"{meta.interval_ms / 1000:g} s"
        )
        wanted = self.config.get("interval_ms")
        if wanted is not None and wanted != meta.interval_ms:
            raise UserError(f"the board says interval_ms {meta.interval_ms}, not {wanted} "
                            "as deployed")  # fmt: skip
        return 0

    def _advice(self, port: str) -> str:
        c = self.config
        return (
            f"{c['device_id']} did not come online via the broker at {self.url} within "
            f"{self.wait_s:g} s — check the Wi-Fi name and password it was given (--wifi-ssid "
            f"{c['wifi_ssid']!r}, IOTPIPE_WIFI_PASSWORD); that the broker listens on the LAN "
            "(`iotpipe broker --bind 0.0.0.0`) and reloaded the board's login (said "
            f"above); and the board's serial console: `mpremote connect {port}` shows its "
            "`iotpipe: …` progress lines"
        )

    def _say_where_it_went(self) -> None:
        c = self.config
        print(
            f"{c['device_id']} now joins Wi-Fi {c['wifi_ssid']!r} and publishes to {self.url} "
            f"as {c['mqtt_user']} under {c['base_topic']}/{c['device_id']}/…\n"
            f"watch for it: iotpipe sub --broker {self.url} --mqtt-credentials "
            f"{self.reader_file}"
        )
