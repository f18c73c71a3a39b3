"""Alert rules evaluated: what fires, what resolves, and which of those a person is told.

Pure: no I/O, no clock of its own (every method takes ``now``), no threads; the caller
(``alerts.Alerts``) serialises calls, persists :attr:`Engine.states` and delivers what
comes back. A state is kept per (rule, device, metric) so one rule over ``device = "*"``
tracks each board on its own. The states are plain JSON, so a restart continues where it
stopped: what was firing stays firing and is not announced again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from iotpipe.dashboard.alert_rules import EMPTY, Rule, RuleSet

WINDOW_LIMIT = 10_000
"""Readings kept per (device, metric) for rate rules: bounded however fast a board sends."""


@dataclass(slots=True)
class State:
    state: str = "ok"  # ok | pending | firing
    since: float = 0.0
    value: float | None = None
    last_notice: float = 0.0
    reminders: int = 0
    resolved_at: float = 0.0
    muted: bool = False  # fired inside the rule's quiet period: its resolving is not sent
    acked: bool = False
    silenced_until: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> State:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class Change:
    """One thing that happened: fired, resolved, a reminder, or a one-off report."""

    rule: Rule
    device: str
    metric: str
    state: str  # firing | resolved | reminder | reported
    value: float | None
    since: float
    notify: bool
    detail: str = ""


def key_of(rule: str, device: str, metric: str) -> str:
    return f"{rule}\x1f{device}\x1f{metric}"


@dataclass
class Engine:
    rules: RuleSet = EMPTY
    states: dict[str, State] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, float] = field(default_factory=dict)  # seconds, from retained meta
    windows: dict[tuple[str, str], deque[tuple[float, float]]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)  # keys whose state changed since taken

    def state(self, rule: Rule, device: str, metric: str) -> State:
        key = key_of(rule.name, device, metric)
        found = self.states.get(key)  # not setdefault: a new State per reading is costly
        if found is None:
            found = self.states[key] = State()
        return found

    def _touch(self, rule: Rule, device: str, metric: str) -> None:
        self.dirty.add(key_of(rule.name, device, metric))

    def _fire(self, rule: Rule, device: str, metric: str, value: float | None, since: float,
              now: float, detail: str = "") -> Change:  # fmt: skip
        s = self.state(rule, device, metric)
        s.state, s.since, s.value = "firing", since, value
        s.reminders, s.acked = 0, False
        s.muted = s.resolved_at > 0 and now - s.resolved_at < rule.quiet_s
        notify = not s.muted and now >= s.silenced_until
        if notify:
            s.last_notice = now
        self._touch(rule, device, metric)
        return Change(rule, device, metric, "firing", value, since, notify, detail)

    def _resolve(self, rule: Rule, device: str, metric: str, value: float | None,
                 now: float, detail: str = "") -> Change:  # fmt: skip
        s = self.state(rule, device, metric)
        notify = not s.muted and now >= s.silenced_until
        since = s.since
        s.state, s.value, s.resolved_at, s.muted = "ok", value, now, False
        self._touch(rule, device, metric)
        return Change(rule, device, metric, "resolved", value, since, notify, detail)

    # -- readings -----------------------------------------------------------------------
    def reading(
        self, device: str, ts: float, metrics: dict[str, float], now: float
    ) -> list[Change]:
        self.last_seen[device] = now
        changes: list[Change] = []
        for rule in self.rules.rules:
            if not rule.matches(device):
                continue
            if rule.kind == "quiet":
                if self.state(rule, device, "").state == "firing":
                    changes.append(self._resolve(rule, device, "", None, now, "readings again"))
                continue
            value = metrics.get(rule.metric)
            if value is None or rule.kind not in ("threshold", "rate"):
                continue
            if rule.kind == "rate":
                breached, cleared = self._rate(rule, device, ts, value)
            else:
                breached, cleared = _threshold(rule, value)
            change = self._step(rule, device, value, breached, cleared, now)
            if change is not None:
                changes.append(change)
        return changes

    def _rate(self, rule: Rule, device: str, ts: float, value: float) -> tuple[bool, bool]:
        window = self.windows.setdefault((device, rule.metric), deque(maxlen=WINDOW_LIMIT))
        if not window or ts > window[-1][0]:
            window.append((ts, value))
        longest = max((r.within_s for r in self.rules.rules if r.kind == "rate"), default=0.0)
        while window and window[0][0] < ts - longest:
            window.popleft()
        values = [v for t, v in window if t >= ts - rule.within_s]
        rose = rule.rise is not None and value - min(values) > rule.rise
        fell = rule.fall is not None and max(values) - value > rule.fall
        return rose or fell, not (rose or fell)

    def _step(self, rule: Rule, device: str, value: float, breached: bool, cleared: bool,
              now: float) -> Change | None:  # fmt: skip
        s = self.state(rule, device, rule.metric)
        if s.state == "firing":
            s.value = value
            return self._resolve(rule, device, rule.metric, value, now) if cleared else None
        if not breached:
            if s.state == "pending":
                s.state = "ok"
                self._touch(rule, device, rule.metric)
            return None
        if s.state == "ok":
            s.state, s.since = "pending", now
            self._touch(rule, device, rule.metric)
        s.value = value
        if now - s.since >= rule.for_s:
            return self._fire(rule, device, rule.metric, value, s.since, now)
        return None

    # -- board status, gap reports, the store -------------------------------------------
    def status(self, device: str, status: str, now: float) -> list[Change]:
        changes = []
        for rule in self.rules.rules:
            if rule.kind != "offline" or not rule.matches(device):
                continue
            firing = self.state(rule, device, "").state == "firing"
            if status == "offline" and not firing:
                changes.append(self._fire(rule, device, "", None, now, now, "status offline"))
            elif status == "online" and firing:
                changes.append(self._resolve(rule, device, "", None, now, "status online"))
        return changes

    def meta(self, device: str, interval_ms: object) -> None:
        if isinstance(interval_ms, int) and not isinstance(interval_ms, bool) and interval_ms > 0:
            self.intervals[device] = interval_ms / 1000

    def gap(self, device: str, count: int, detail: str, now: float) -> list[Change]:
        rules = [r for r in self.rules.rules if r.kind == "missing" and r.matches(device)]
        return [
            Change(r, device, "", "reported", float(count), now, now >= self._silence(r, device),
                   detail)
            for r in rules
        ]  # fmt: skip

    def _silence(self, rule: Rule, device: str) -> float:
        return self.state(rule, device, "").silenced_until

    def store(self, ok: bool, reason: str, now: float) -> list[Change]:
        changes = []
        for rule in self.rules.rules:
            if rule.kind != "store":
                continue
            firing = self.state(rule, "", "").state == "firing"
            if not ok and not firing:
                changes.append(self._fire(rule, "", "", None, now, now, reason))
            elif ok and firing:
                changes.append(self._resolve(rule, "", "", None, now, "writing again"))
        return changes

    # -- time passing -------------------------------------------------------------------
    def tick(self, now: float) -> list[Change]:
        changes: list[Change] = []
        for quiet in self.rules.rules:
            if quiet.kind == "quiet":
                changes += self._quiet(quiet, now)
        for key, s in self.states.items():
            rule_name, device, metric = key.split("\x1f")
            rule = self._named(rule_name)
            if rule is None:
                continue
            if s.state == "pending" and now - s.since >= rule.for_s:
                changes.append(self._fire(rule, device, metric, s.value, s.since, now))
            elif s.state == "firing" and self._reminder_due(rule, s, now):
                s.reminders += 1
                s.last_notice = now
                self.dirty.add(key)
                changes.append(Change(rule, device, metric, "reminder", s.value, s.since, True))
        return changes

    def _named(self, name: str) -> Rule | None:
        return next((r for r in self.rules.rules if r.name == name), None)

    @staticmethod
    def _reminder_due(rule: Rule, s: State, now: float) -> bool:
        return (
            rule.repeat_s is not None
            and s.reminders < rule.repeat_max
            and not s.acked
            and not s.muted
            and now >= s.silenced_until
            and now - s.last_notice >= rule.repeat_s
        )

    def _quiet(self, rule: Rule, now: float) -> list[Change]:
        changes = []
        for device, seen in self.last_seen.items():
            interval = self.intervals.get(device)
            if interval is None or not rule.matches(device):
                continue
            limit = rule.intervals * interval
            if now - seen > limit and self.state(rule, device, "").state != "firing":
                detail = f"no reading for {now - seen:.0f} s (limit {limit:g} s)"
                changes.append(self._fire(rule, device, "", None, seen, now, detail))
        return changes

    def take_dirty(self) -> dict[str, State]:
        taken = {k: self.states[k] for k in self.dirty if k in self.states}
        self.dirty.clear()
        return taken


def _threshold(rule: Rule, value: float) -> tuple[bool, bool]:
    """(breached, cleared): a firing rule resolves only once back past the hysteresis."""
    breached = (rule.above is not None and value > rule.above) or (
        rule.below is not None and value < rule.below
    )
    h = rule.hysteresis
    cleared = (rule.above is None or value <= rule.above - h) and (
        rule.below is None or value >= rule.below + h
    )
    return breached, cleared
