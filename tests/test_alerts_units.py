"""The alert rules file and the rule engine, pure: what fires, what resolves, what is sent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iotpipe.dashboard.alert_engine import Engine, State
from iotpipe.dashboard.alert_rules import parse_rules
from iotpipe.dashboard.alert_text import notification, record
from iotpipe.dashboard.notify import masked
from iotpipe.errors import UserError
from iotpipe.mqttwire.event import Gap, gap_of, parse_event
from iotpipe.topics import PayloadRejected

DEST = '[destinations]\nphone = "json://127.0.0.1:9/"\n'


def engine(rules: str) -> Engine:
    return Engine(parse_rules(DEST + rules, "alerts.toml", Path(".")))


def states(changes: list) -> list[tuple[str, float | None]]:  # type: ignore[type-arg]
    return [(c.state, c.value) for c in changes]


def feed(e: Engine, values: list[float], start: float = 1000.0, step: float = 1.0) -> list:  # type: ignore[type-arg]
    out = []
    for i, v in enumerate(values):
        out += e.reading("dev-a", start + i * step, {"temperature": v}, start + i * step)
    return out


def test_hysteresis_fires_at_the_threshold_and_resolves_only_below_the_band() -> None:
    e = engine('[[rule]]\nname = "hot"\nmetric = "temperature"\nabove = 35\nhysteresis = 1\n')
    got = feed(e, [30, 35.5, 34.8, 35.2, 34.5, 35.9, 33.9, 34.2])
    assert states(got) == [("firing", 35.5), ("resolved", 33.9)]
    assert all(c.notify for c in got)


def test_for_fires_only_when_the_breach_lasts_and_counts_from_its_start() -> None:
    e = engine('[[rule]]\nname = "hot"\nmetric = "temperature"\nabove = 35\nfor = "5m"\n')
    assert feed(e, [36, 36, 30], step=60) == []  # two minutes above, then back: nothing
    got = feed(e, [36, 36, 36, 36, 36, 36], start=5000, step=60)
    assert states(got) == [("firing", 36)]
    assert got[0].since == 5000  # since when it first went above, not when it fired


def test_for_fires_from_the_clock_when_no_reading_comes() -> None:
    e = engine('[[rule]]\nname = "hot"\nmetric = "temperature"\nabove = 35\nfor = "60s"\n')
    assert feed(e, [40]) == []
    assert e.tick(1030) == []
    assert states(e.tick(1061)) == [("firing", 40)]


def test_a_rate_rule_fires_when_the_value_rose_too_fast_within_the_window() -> None:
    e = engine('[[rule]]\nname = "rising"\nmetric = "temperature"\nrise = 5\nwithin = "10m"\n')
    slow = feed(e, [20, 21, 22, 23, 24, 25, 26], step=300)  # +6 over 30 min: +2 per 10 min
    assert slow == []
    got = feed(e, [26, 29, 32.5, 32.6], start=10_000, step=120)
    assert states(got) == [("firing", 32.5)]


def test_a_quiet_board_fires_after_n_intervals_and_resolves_with_its_next_reading() -> None:
    e = engine('[[rule]]\nname = "quiet"\nkind = "quiet"\nintervals = 3\n')
    e.meta("dev-a", 10_000)  # one reading every 10 s
    feed(e, [20])
    assert e.tick(1025) == []
    fired = e.tick(1031)
    assert [(c.state, c.device) for c in fired] == [("firing", "dev-a")]
    assert e.tick(1040) == []  # once, not every tick
    assert states(feed(e, [21], start=1050)) == [("resolved", None)]


def test_offline_gap_and_store_rules() -> None:
    e = engine(
        '[[rule]]\nname = "off"\nkind = "offline"\n'
        '[[rule]]\nname = "lost"\nkind = "missing"\n'
        '[[rule]]\nname = "disk"\nkind = "store"\n'
    )
    assert states(e.status("dev-a", "offline", 1)) == [("firing", None)]
    assert e.status("dev-a", "offline", 2) == []
    assert states(e.status("dev-a", "online", 3)) == [("resolved", None)]
    assert states(e.gap("dev-a", 12, "12 missing", 4)) == [("reported", 12.0)]
    assert [c.detail for c in e.store(False, "disk I/O error", 5)] == ["disk I/O error"]
    assert e.store(False, "disk I/O error", 6) == []
    assert states(e.store(True, "", 7)) == [("resolved", None)]


def test_reminders_are_bounded_and_stop_when_acknowledged() -> None:
    e = engine(
        '[[rule]]\nname = "hot"\nmetric = "temperature"\nabove = 35\n'
        'repeat = "10m"\nrepeat_max = 2\n'
    )
    feed(e, [40])
    reminders = [c for t in range(1000, 10_000, 60) for c in e.tick(t)]
    assert [c.state for c in reminders] == ["reminder", "reminder"]
    e2 = engine('[[rule]]\nname = "hot"\nmetric = "temperature"\nabove = 35\nrepeat = "10m"\n')
    feed(e2, [40])
    next(iter(e2.states.values())).acked = True
    assert [c for t in range(1000, 10_000, 60) for c in e2.tick(t)] == []


def test_the_quiet_period_keeps_a_flapping_rule_from_notifying_again() -> None:
    e = engine('[[rule]]\nname = "hot"\nmetric = "temperature"\nabove = 35\nquiet = "1h"\n')
    got = feed(e, [40, 30, 40, 30], step=60)
    assert [(c.state, c.notify) for c in got] == [
        ("firing", True), ("resolved", True), ("firing", False), ("resolved", False),
    ]  # fmt: skip
    later = feed(e, [40], start=1000 + 3 * 60 + 3601)
    assert [(c.state, c.notify) for c in later] == [("firing", True)]


def test_a_silenced_alert_sends_nothing_until_the_time_is_up() -> None:
    e = engine('[[rule]]\nname = "hot"\nmetric = "temperature"\nabove = 35\n')
    feed(e, [40])
    next(iter(e.states.values())).silenced_until = 2000
    assert [(c.state, c.notify) for c in feed(e, [30], start=1500)] == [("resolved", False)]


def test_state_round_trips_through_json_so_a_restart_does_not_refire() -> None:
    e = engine('[[rule]]\nname = "hot"\nmetric = "temperature"\nabove = 35\n')
    feed(e, [40])
    saved = {k: s.to_json() for k, s in e.take_dirty().items()}
    again = engine('[[rule]]\nname = "hot"\nmetric = "temperature"\nabove = 35\n')
    again.states = {k: State.from_json(v) for k, v in saved.items()}
    assert feed(again, [41, 42]) == []
    assert states(feed(again, [30])) == [("resolved", 30)]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[rule]]\nmetric = "t"\n', "line 3 (rule 1): give 'above', 'below' or both"),
        ('[[rule]]\nmetric = "t"\nabove = 1\n[[rule]]\nmetric = "t"\nabove = "x"\n',
         "line 6 (rule 2): 'above' must be a number"),
        ('[[rule]]\nmetric = "t"\nabove = 1\nto = "pager"\n', "'to' names pager"),
        ('[[rule]]\nmetric = "t"\nabove = 1\nfor = "soon"\n', "'for'"),
        ('[[rule]]\nmetric = "t"\nabove = 1\nabvoe = 2\n', "unknown keys abvoe"),
        ('[[rule]]\nkind = "rate"\nmetric = "t"\nrise = 1\n', "'rise' or 'fall' and 'within'"),
        ('[[rule]\n', "not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_rules_file_says_what_and_where(text: str, words: str) -> None:
    with pytest.raises(UserError) as err:
        parse_rules(DEST + text, "alerts.toml", Path("."))
    assert words in str(err.value)


def test_secrets_come_from_the_environment_or_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NTFY_TOKEN", "tk_s3cret")
    secret = tmp_path / "hook.url"
    secret.write_text("json://user:hunter2@127.0.0.1:9/\n")
    secret.chmod(0o644)
    text = (
        '[destinations]\nntfy = "ntfys://${NTFY_TOKEN}@ntfy.example/t"\n'
        'hook = { file = "hook.url" }\n'
    )
    with pytest.raises(UserError, match="readable by others"):
        parse_rules(text, "a.toml", tmp_path)
    os.chmod(secret, 0o600)
    rules = parse_rules(text, "a.toml", tmp_path)
    assert rules.destinations["ntfy"].url == "ntfys://tk_s3cret@ntfy.example/t"
    assert rules.destinations["hook"].url == "json://user:hunter2@127.0.0.1:9/"
    assert "hunter2" not in masked(rules.destinations["hook"].url)
    assert "tk_s3cret" not in masked(rules.destinations["ntfy"].url)
    assert masked("ntfys://ntfy.example/greenhouse-7f3k9q") == "ntfys://ntfy.example/…"
    monkeypatch.delenv("NTFY_TOKEN")
    with pytest.raises(UserError, match="NTFY_TOKEN is not set"):
        parse_rules(text, "a.toml", tmp_path)


def test_a_notification_names_device_metric_value_unit_threshold_since_and_link() -> None:
    e = engine('[[rule]]\nname = "hot"\nmetric = "temperature"\nabove = 35\n')
    (change,) = feed(e, [36.5])
    alert = record(change, "°C", "http://pi.local:8080", 1000.0)
    title, body = notification(alert)
    assert title == "[FIRING] hot — dev-a"
    for part in (
        "device: dev-a",
        "metric: temperature",
        "value: 36.5 °C",
        "threshold: > 35",
        "since: 1970-01-01 00:16:40 UTC",
        "chart: http://pi.local:8080/?device=dev-a&metric=temperature&since=-800&until=2800",
    ):
        assert part in body.splitlines(), (part, body)  # fmt: skip


def parse_gap(device: str, payload: bytes) -> Gap | None:
    return gap_of(parse_event(payload), device)


def test_gap_reports_are_parsed_by_the_shared_contract() -> None:
    payload = (
        b'{"device":"dev-a","boot":"0a1b2c3d","uptime_ms":null,"ts":1.0,'
        b'"event":"readings_missing","data":{"boot":"0a1b2c3d","first":41,"last":52,'
        b'"count":12,"where":"beyond_ring"}}'
    )
    gap = parse_gap("dev-a", payload)
    assert gap is not None and (gap.first, gap.last, gap.count) == (41, 52, 12)
    assert "no longer held by the board" in gap.detail()
    assert parse_gap("dev-a", b'{"event":"boot","data":{}}') is None
    with pytest.raises(PayloadRejected):
        parse_gap("dev-a", b'{"event":"readings_missing","data":{"first":"x"}}')
