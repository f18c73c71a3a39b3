"""`iotpipe announce`: announce the boards on Wi-Fi to Home Assistant, on their behalf.

Runs beside the broker (it reads the boards' logins in the broker's --data), logs in as
the broker's ``announcer`` role, and follows each board's retained meta: what to publish
is decided in ``iotpipe.commands.announcer`` (pure), this module only does the MQTT and the
files. `iotpipe up` starts it; docs/homeassistant.md shows it under systemd.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from iotpipe import transport
from iotpipe.broker import auth
from iotpipe.commands.announcer import Announcer
from iotpipe.errors import UserError
from iotpipe.mqttlogin import SETTINGS as LOGIN_SETTINGS
from iotpipe.mqttlogin import Login, LoginFailed, connect, fill_credentials
from iotpipe.mqttwire import discovery
from iotpipe.settings import add_settings
from iotpipe.topics import Message

log = logging.getLogger(__name__)

LOGINS_EVERY_S = 5.0  # how soon a new or revoked board login is noticed


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, *LOGIN_SETTINGS, "data", "base-topic", "ha-prefix", "log-level")


class Loop:
    """The announcer's MQTT side: subscriptions in order, and what it decides published."""

    def __init__(self, session: transport.Session, announcer: Announcer, folder: Path) -> None:
        self.session = session
        self.announcer = announcer
        self.folder = folder
        self.lock = threading.Lock()
        self._known: set[str] | None = None
        prefix = announcer.prefix
        self.metas = f"{announcer.base}/+/meta"
        self.configs = [f"{prefix}/+/+/+/config", discovery.birth_topic(prefix)]
        # In this order, in one SUBSCRIBE (sent again after every reconnect): the broker
        # sends the retained messages of the metas before those of the configs, so every
        # meta is known before any config is judged.
        for topic in (self.metas, *self.configs):
            session.handle(topic, self._message)

    def _message(self, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        with self.lock:
            if msg.topic == self.configs[1]:
                out = self.announcer.again() if payload == b"online" else []
            elif msg.topic.endswith("/meta"):
                out = self.announcer.meta(msg.topic, payload)
            else:
                out = self.announcer.config(msg.topic, payload)
        self.publish(out)

    def publish(self, messages: list[Message]) -> None:
        for m in messages:
            self.session.publish(m.topic, m.payload, qos=1, retain=m.retain)
            log.debug("published %s (%d bytes)", m.topic, len(m.payload))

    def check_logins(self) -> None:
        try:
            wifi = {c.device for c in auth.boards(self.folder) if c.device}
        except UserError as exc:  # a damaged login file: keep the boards known so far
            log.warning("cannot read the board logins: %s", exc)
            return
        if wifi != self._known:
            log.info("boards on Wi-Fi (with a login of their own): %s", sorted(wifi) or "none")
            self._known = wifi
        with self.lock:
            out = self.announcer.boards(wifi)
        self.publish(out)


def run(args: argparse.Namespace) -> int:
    folder = auth.broker_data(Path(args.data))
    if args.mqtt_credentials is None and not args.mqtt_user and not args.broker.username:
        args.mqtt_credentials = auth.credentials_dir(folder) / "announcer.json"
        if not args.mqtt_credentials.is_file():
            raise UserError(
                f"{folder} has no announcer login yet — restart `iotpipe broker --data "
                f"{folder}` once (it makes it), or give --mqtt-credentials"
            )
    fill_credentials(args)
    try:
        session = connect(Login.from_args(args), client_id="iotpipe-announce")
    except LoginFailed as exc:
        raise UserError(str(exc)) from None
    loop = Loop(session, Announcer(args.base_topic, args.ha_prefix), folder)
    loop.check_logins()
    session.start_thread()
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: disconnect cleanly
    log.info("announcing boards on Wi-Fi from %s/+/meta to %s", args.base_topic, args.ha_prefix)
    try:
        while True:
            time.sleep(LOGINS_EVERY_S)
            loop.check_logins()
    except KeyboardInterrupt:
        return 0
    finally:
        session.stop_thread()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
