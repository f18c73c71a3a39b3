"""Alerts in the running dashboard: rules (``alert_rules``) evaluated by ``alert_engine``
on every stored reading, board status, gap report and store state, kept in the history
store (``alert_store``), published to ``<base>/<device>/alert``, pushed to the page and
sent through Apprise (``notify``). docs/alerts.md is the user's guide.

Every entry point takes one lock: calls come from the writer thread (readings, store
state), the ingest's network thread (gap events) and the HTTP threads (acknowledge,
silence), and a tick thread that moves time on ("for" durations, quiet boards,
reminders) and reloads the rules file when it changed or on SIGHUP — validated first, a
bad file keeps the rules that run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from iotpipe import topics
from iotpipe.counters import Counters
from iotpipe.dashboard.alert_engine import Change, Engine, State
from iotpipe.dashboard.alert_rules import EMPTY, RuleSet, load_rules
from iotpipe.dashboard.alert_store import AlertStore
from iotpipe.dashboard.alert_text import notification, record
from iotpipe.dashboard.notify import Notifier
from iotpipe.dashboard.store import DeviceRow
from iotpipe.errors import UserError
from iotpipe.mqttwire.alert import encode_alert
from iotpipe.mqttwire.event import gap_of, parse_event

log = logging.getLogger(__name__)
TICK_S = 1.0
RELOAD_POLL_S = 2.0
MAX_SILENCE_S = 30 * 86400


class Alerts:
    def __init__(
        self,
        rules_path: Path | None,
        base: str,
        db: AlertStore,
        notifier: Notifier,
        counters: Counters,
        public_url: str,
        publish: Callable[[str, bytes], object],
        announce: Callable[[dict[str, Any]], None],
    ) -> None:
        self.rules_path = rules_path
        self.base = base
        self.db = db
        self.notifier = notifier
        self.counters = counters
        self.public_url = public_url
        self.publish = publish
        self.announce = announce
        self.rules_error: str | None = None
        self.engine = Engine(load_rules(rules_path) if rules_path else EMPTY)
        self._mtime = self._rules_mtime()
        self._units: dict[str, dict[str, str]] = {}
        self._lock = threading.RLock()
        self._reload = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-ticks", daemon=True)
        for key, raw in db.load_states().items():
            self.engine.states[key] = State.from_json(raw)

    @property
    def rules(self) -> RuleSet:
        return self.engine.rules

    def start(self, devices: list[DeviceRow]) -> None:
        """Begin with what the store knows: each board's last reading, interval and units."""
        with self._lock:
            for row in devices:
                meta = row.meta or {}
                self.engine.meta(row.id, meta.get("interval_ms"))
                self._units[row.id] = dict(meta.get("units", {}))
                if row.last_ts is not None:
                    self.engine.last_seen[row.id] = row.last_ts
        self.notifier.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            self._save_states()  # what only moved to or from "pending" since the last tick
        self.notifier.stop()
        self.db.close()

    # -- what happened ------------------------------------------------------------------
    def check(self, r: topics.Telemetry) -> None:
        with self._lock:
            self._emit(self.engine.reading(r.device, r.ts, r.metrics, time.time()))

    def status(self, device: str, status: str) -> None:
        with self._lock:
            self._emit(self.engine.status(device, status, time.time()))

    def meta(self, device: str, meta: dict[str, Any]) -> None:
        with self._lock:
            self.engine.meta(device, meta.get("interval_ms"))
            self._units[device] = dict(meta.get("units", {}))

    def store_state(self, ok: bool, reason: str = "") -> None:
        """The writer's one call (Shared contract 4): can the store write right now?"""
        with self._lock:
            self._emit(self.engine.store(ok, reason, time.time()))

    def on_event(self, msg: mqtt.MQTTMessage) -> None:
        """Each message on ``<base>/+/event`` (from ingest): gap reports become alerts."""
        try:
            device, _kind = topics.split(self.base, msg.topic)
            gap = gap_of(parse_event(bytes(msg.payload)), device)
            if gap is None:
                return
            with self._lock:
                self._emit(self.engine.gap(device, gap.count, gap.detail(), time.time()))
        except topics.PayloadRejected as exc:
            self.counters.inc("rejected", exc.reason)
            log.debug("rejected %s: %s", msg.topic, exc)
        except Exception:  # never let one message kill the network thread
            self.counters.inc("rejected", "internal_error")
            log.exception("could not handle an event on %s", msg.topic)

    def _emit(self, changes: list[Change], flush: bool = False) -> None:
        """Keep, publish, push and send each change. States are saved with every change;
        a reading that only moves a rule to or from "pending" is saved by the next tick,
        so a flood of readings around a threshold does not commit once per reading."""
        now = time.time()
        for change in changes:
            unit = self._units.get(change.device, {}).get(change.metric, "")
            alert = record(change, unit, self.public_url, now)
            alert["id"] = self._keep(alert)
            self.counters.inc("alerts", change.state)
            log.info("alert %s: %s", change.state, alert["message"])
            if change.device:
                self.publish(topics.topic(self.base, change.device, "alert"), encode_alert(alert))
            self.announce(alert)
            if change.notify:
                title, body = notification(alert)
                for dest in self.rules.destinations_of(change.rule):
                    self.notifier.send(dest, title, body)
        if changes or flush:
            self._save_states()

    def _save_states(self) -> None:
        dirty = self.engine.take_dirty()
        if dirty:
            try:
                self.db.save_states({k: s.to_json() for k, s in dirty.items()})
            except Exception:  # the store may be what is failing: the alert still goes out
                self.counters.inc("alert_store_failed")
                log.warning("could not keep the alert state in the store", exc_info=True)

    def _keep(self, alert: dict[str, Any]) -> int | None:
        try:
            return self.db.add(alert)
        except Exception:  # the store may be what is failing: the alert still goes out
            self.counters.inc("alert_store_failed")
            log.warning("could not keep an alert in the store", exc_info=True)
            return None

    # -- time and the rules file --------------------------------------------------------
    def request_reload(self) -> None:
        """From the SIGHUP handler: only sets a flag, the tick thread does the work."""
        self._reload.set()

    def _rules_mtime(self) -> float | None:
        try:
            return self.rules_path.stat().st_mtime if self.rules_path else None
        except OSError:
            return None

    def _run(self) -> None:
        last_poll = 0.0
        while not self._stop.wait(TICK_S):
            try:
                if time.monotonic() - last_poll >= RELOAD_POLL_S or self._reload.is_set():
                    last_poll = time.monotonic()
                    self._maybe_reload()
                with self._lock:
                    self._emit(self.engine.tick(time.time()), flush=True)
            except Exception:  # a daemon logs and carries on
                log.exception("alert tick failed")

    def _maybe_reload(self) -> None:
        mtime = self._rules_mtime()
        if self.rules_path is None or (mtime == self._mtime and not self._reload.is_set()):
            return
        self._reload.clear()
        self._mtime = mtime
        try:
            rules = load_rules(self.rules_path)
        except UserError as exc:
            self.rules_error = str(exc)
            self.counters.inc("alert_rules_rejected")
            log.warning("alert rules not reloaded, the running ones stay: %s", exc)
            return
        with self._lock:
            self.engine.rules = rules
            self.rules_error = None
        self.counters.inc("alert_rules_loaded")
        log.info("alert rules reloaded from %s: %d rules", self.rules_path, len(rules.rules))

    # -- what the page and the API see --------------------------------------------------
    def history(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        return self.db.page(before, limit)

    def since(self, after: int, limit: int) -> list[dict[str, Any]]:
        return self.db.after(after, limit)

    def firing(self) -> list[dict[str, Any]]:
        names = {r.name for r in self.rules.rules}
        with self._lock:
            items = list(self.engine.states.items())
        out = []
        for key, s in items:
            rule, device, metric = key.split("\x1f")
            if s.state == "firing" and rule in names:
                out.append({"key": key, "rule": rule, "device": device, "metric": metric,
                            "value": s.value, "since": s.since, "acked": s.acked,
                            "silenced_until": s.silenced_until or None})  # fmt: skip
        return sorted(out, key=lambda a: a["since"], reverse=True)

    def acknowledge(self, key: str) -> bool:
        """No more reminders for this firing; False if nothing fires under ``key``."""
        return self._mark(key, lambda s: setattr(s, "acked", True))

    def silence(self, key: str, seconds: float) -> bool:
        until = time.time() + min(seconds, MAX_SILENCE_S)
        return self._mark(key, lambda s: setattr(s, "silenced_until", until))

    def _mark(self, key: str, change: Callable[[State], None]) -> bool:
        with self._lock:
            s = self.engine.states.get(key)
            if s is None or s.state != "firing":
                return False
            change(s)
            self.db.save_states({key: s.to_json()})
        return True

    def overview(self) -> dict[str, Any]:
        return {"firing": self.firing(), "destinations": self.notifier.states(),
                "rules": len(self.rules.rules), "rules_error": self.rules_error}  # fmt: skip
