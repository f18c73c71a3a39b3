"""Alert rules in a real dashboard process, fed through the real broker, notifying a real
local HTTP receiver (Apprise json://): hysteresis, "for", a quiet board, a gap report,
a restart that neither forgets nor refires, a failing destination, rules reloaded."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iotpipe.dashboard.alert_store import AlertStore
from iotpipe.dashboard.sqlite_store import SCHEMA
from iotpipe.dashboard.store import open_store
from tests import test_dashboard_support as support
from tests.alerts_support import HttpReceiver
from tests.conftest import ROOT, Broker, Procs, wait_until
from tests.test_dashboard_support import Publisher, http, reading, start_dashboard
from tests.test_noloss_store import OLD_SCHEMA  # main at 1b120ab wrote this

publisher = support.publisher  # fixture
postgres = support.postgres  # fixture
WAIT = 60  # generous: the machine may be busy


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    yield r
    r.close()


def rules_file(path: Path, receiver: HttpReceiver, rules: str) -> Path:
    path.write_text(f'[destinations]\nhook = "json://127.0.0.1:{receiver.port}/alerts"\n{rules}')
    return path


def messages(receiver: HttpReceiver) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.got]


def titles(receiver: HttpReceiver) -> list[str]:
    return [m["title"] for m in messages(receiver)]


def meta(pub: Publisher, device: str, interval_ms: int = 1000) -> None:
    body = {"units": {"temperature": "°C"}, "interval_ms": interval_ms, "fw": "t", "board": "t"}
    pub.send(f"iotpipe/{device}/meta", json.dumps(body).encode(), retain=True)


def send(pub: Publisher, device: str, values: list[float], first_seq: int = 0) -> None:
    for i, value in enumerate(values):
        pub.reading(reading(device, first_seq + i, time.time(), temperature=value))


def old_store(path: Path, ts: float, value: float) -> None:
    """One temperature reading of dev-a in a store file of the old format."""
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(OLD_SCHEMA)
        conn.execute("INSERT INTO devices VALUES ('dev-a', NULL, NULL, ?, ?)",
                     (ts, json.dumps({"temperature": value})))  # fmt: skip
        conn.execute("INSERT INTO series VALUES (1, 'dev-a', 'temperature')")
        conn.execute("INSERT INTO readings VALUES ('dev-a', '0a1b2c3d', 900, ?)", (ts,))
        conn.execute("INSERT INTO samples VALUES (1, ?, ?)", (ts, value))
        for res in (60, 3600):
            bucket = int(ts // res) * res
            conn.execute("INSERT INTO rollups VALUES (1, ?, ?, 1, ?, ?, ?)",
                         (res, bucket, value, value, value))  # fmt: skip


HOT = '[[rule]]\nname = "too hot"\nmetric = "temperature"\nabove = 35\nhysteresis = 1\n'


def test_hysteresis_fires_once_and_a_restart_neither_forgets_nor_refires(
    procs: Procs, broker: Broker, publisher: Publisher, receiver: HttpReceiver, tmp_path: Path
) -> None:
    data = tmp_path / "dash"
    old_store(data / "history.sqlite3", time.time() - 60, 20.0)
    rules = rules_file(tmp_path / "alerts.toml", receiver, HOT)
    args = ("--alerts", str(rules), "--public-url", "http://pi.example:8080")
    dash = start_dashboard(procs, broker, data, *args)
    meta(publisher, "dev-a")
    wait_until(lambda: dash.get("/api/devices")[1][0]["units"]["temperature"] == "°C", WAIT, "meta")
    send(publisher, "dev-a", [30, 35.5, 34.8, 35.2, 34.5, 35.9, 34.1, 33.9])
    wait_until(lambda: len(receiver.got) >= 2, WAIT, "a firing and a resolving")
    assert titles(receiver) == ["[FIRING] too hot — dev-a", "[RESOLVED] too hot — dev-a"]
    body = messages(receiver)[0]["message"].splitlines()
    assert body[0] == "too hot: dev-a temperature 35.5 °C (> 35)"
    assert "value: 35.5 °C" in body and "threshold: > 35" in body
    link = next(line for line in body if line.startswith("chart: "))
    assert link.startswith("chart: http://pi.example:8080/?device=dev-a&metric=temperature&since=")
    assert messages(receiver)[1]["message"].startswith("resolved: too hot: dev-a temperature 33.9")

    send(publisher, "dev-a", [40], first_seq=100)
    wait_until(lambda: len(receiver.got) == 3, WAIT, "firing again")
    wait_until(lambda: dash.get("/api/alerts/firing")[1]["firing"], WAIT, "listed as firing")
    dash.proc.stop()

    dash = start_dashboard(procs, broker, data, *args, name="dashboard-again")
    firing = dash.get("/api/alerts/firing")[1]["firing"]
    assert [(a["rule"], a["device"], a["value"]) for a in firing] == [("too hot", "dev-a", 40.0)]
    send(publisher, "dev-a", [41, 42, 30], first_seq=200)  # still firing, then resolved
    wait_until(lambda: len(receiver.got) == 4, WAIT, "the resolving after the restart")
    assert [t.split("]")[0] for t in titles(receiver)] == [
        "[FIRING", "[RESOLVED", "[FIRING", "[RESOLVED",
    ]  # fmt: skip
    history = dash.get("/api/alerts?limit=3")[1]
    assert [(a["state"], a["value"]) for a in history] == [
        ("resolved", 30.0), ("firing", 40.0), ("resolved", 33.9),
    ]  # fmt: skip
    older = dash.get(f"/api/alerts?before={history[-1]['id']}")[1]
    assert [(a["state"], a["value"]) for a in older] == [("firing", 35.5)]
    series = dash.get("/api/devices/dev-a/series?metric=temperature&since=0")[1]
    assert 20.0 in series["v"]  # the reading in the old store is still there


def test_for_a_quiet_board_a_gap_report_and_an_offline_board_each_notify(
    procs: Procs, broker: Broker, publisher: Publisher, receiver: HttpReceiver, tmp_path: Path
) -> None:
    rules = rules_file(
        tmp_path / "alerts.toml",
        receiver,
        '[[rule]]\nname = "hot for a while"\ndevice = "dev-f"\nmetric = "temperature"\n'
        'above = 35\nfor = "4s"\n'
        '[[rule]]\nname = "gone quiet"\nkind = "quiet"\ndevice = "dev-q"\nintervals = 3\n'
        '[[rule]]\nname = "readings lost"\nkind = "missing"\n'
        '[[rule]]\nname = "board offline"\nkind = "offline"\n',
    )
    dash = start_dashboard(procs, broker, tmp_path / "dash", "--alerts", str(rules))
    send(publisher, "dev-f", [36, 30])  # above for a moment only
    wait_until(lambda: dash.get("/api/devices")[1], WAIT, "dev-f stored")
    started = time.time()
    send(publisher, "dev-f", [36.5, 37], first_seq=10)
    wait_until(lambda: any("hot for a while" in t for t in titles(receiver)), WAIT, "for")
    fired = next(a for a in dash.get("/api/alerts")[1] if a["rule"] == "hot for a while")
    assert fired["state"] == "firing" and fired["ts"] - fired["since"] >= 4
    assert fired["since"] >= started - 1  # counted from the second breach, not the first

    meta(publisher, "dev-q", interval_ms=1000)
    send(publisher, "dev-q", [20])
    wait_until(lambda: any("gone quiet" in t for t in titles(receiver)), WAIT, "quiet board")
    quiet = next(m for m in messages(receiver) if "gone quiet" in m["title"])
    assert "dev-q" in quiet["title"] and "no reading for" in quiet["message"]

    gap = {
        "device": "dev-g", "boot": "0a1b2c3d", "uptime_ms": None, "ts": time.time(),
        "event": "readings_missing",
        "data": {"boot": "0a1b2c3d", "first": 41, "last": 52, "count": 12, "where": "board"},
    }  # fmt: skip
    publisher.send("iotpipe/dev-g/event", json.dumps(gap).encode())
    wait_until(lambda: any("readings lost" in t for t in titles(receiver)), WAIT, "gap")
    lost = next(m for m in messages(receiver) if "readings lost" in m["title"])
    assert lost["title"] == "[REPORTED] readings lost — dev-g"
    assert "12 readings missing (seq 41-52, boot 0a1b2c3d)" in lost["message"]
    assert sum("hot for a while" in t for t in titles(receiver)) == 1

    publisher.send("iotpipe/dev-o/status", b"offline", retain=True)
    wait_until(lambda: "[FIRING] board offline — dev-o" in titles(receiver), WAIT, "offline")
    publisher.send("iotpipe/dev-o/status", b"online", retain=True)
    wait_until(lambda: "[RESOLVED] board offline — dev-o" in titles(receiver), WAIT, "online")


def test_a_failing_destination_is_retried_counted_shown_masked_and_ack_needs_login(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    failing = HttpReceiver(fail_first=2)
    try:
        rules = tmp_path / "alerts.toml"
        rules.write_text(
            f'[destinations]\nhook = "json://iot:hunter2secret@127.0.0.1:{failing.port}/in"\n'
            + HOT
            + 'repeat = "1h"\n'
        )
        dash = start_dashboard(procs, broker, tmp_path / "dash", "--alerts", str(rules))
        send(publisher, "dev-a", [40])
        retrying = 'iotpipe_dashboard_alert_failed_total{reason="retrying"}'
        wait_until(lambda: dash.metric(retrying) >= 1, WAIT, "fail")
        wait_until(lambda: failing.got, 90, "delivered after two retries")
    finally:
        failing.close()
    assert failing.attempts == 3 and failing.got[0].json()["title"].startswith("[FIRING]")
    assert dash.metric('iotpipe_dashboard_alert_failed_total{reason="retrying"}') == 2
    wait_until(lambda: dash.metric("iotpipe_dashboard_alert_sent_total") == 1, WAIT, "sent")
    assert dash.metric("iotpipe_dashboard_alert_queue") == 0
    assert "iotpipe_dashboard_alert_queue " in dash.get("/metrics")[1]
    (dest,) = dash.get("/api/alerts/firing")[1]["destinations"]
    assert dest["ok"] is True and dest["failures"] == 2 and dest["name"] == "hook"
    assert failing.got[0].headers["Authorization"].startswith("Basic ")  # the secret was used
    shown = json.dumps(dash.get("/api/alerts/firing")[1]) + dash.proc.output()
    assert "hunter2secret" not in shown and f"127.0.0.1:{failing.port}" in shown
    assert (
        "Alert destination" in (ROOT / "iotpipe" / "dashboard" / "static" / "alerts.js").read_text()
    )

    (firing,) = dash.get("/api/alerts/firing")[1]["firing"]
    url = dash.url + "/api/alerts/ack"
    assert http(url, {"key": firing["key"]})[0] == 401
    assert http(url, {"key": "nothing"}, token=dash.token)[0] == 404
    status, answer = http(url, {"key": firing["key"]}, token=dash.token)
    assert status == 200 and answer["acked"] is True
    assert dash.get("/api/alerts/firing")[1]["firing"][0]["acked"] is True
    status, answer = http(
        dash.url + "/api/alerts/silence", {"key": firing["key"], "for": "2h"}, token=dash.token
    )
    assert status == 200 and answer["silenced_for"] == 7200
    silenced = dash.get("/api/alerts/firing")[1]["firing"][0]["silenced_until"]
    assert silenced > time.time() + 7000


def test_a_bad_rules_file_keeps_the_running_rules_and_says_where(
    procs: Procs, broker: Broker, publisher: Publisher, receiver: HttpReceiver, tmp_path: Path
) -> None:
    rules = rules_file(tmp_path / "alerts.toml", receiver, HOT)
    dash = start_dashboard(procs, broker, tmp_path / "dash", "--alerts", str(rules))
    rules_file(rules, receiver, HOT.replace("above = 35", 'above = "warm"'))
    os.utime(rules, (time.time() + 5, time.time() + 5))  # a different mtime, however fast
    wait_until(lambda: dash.get("/api/alerts/firing")[1]["rules_error"], WAIT, "refused")
    error = dash.get("/api/alerts/firing")[1]["rules_error"]
    assert "alerts.toml line 3 (rule 1): 'above' must be a number" in error, error
    assert "not reloaded" in dash.proc.output()
    send(publisher, "dev-a", [36])
    wait_until(lambda: receiver.got, WAIT, "the old rule still firing")
    assert titles(receiver) == ["[FIRING] too hot — dev-a"]

    # A good file, and SIGHUP alone (the mtime set back) makes the dashboard read it.
    stamp = rules.stat().st_mtime
    rules_file(rules, receiver, HOT.replace('"too hot"', '"very hot"').replace("35", "50"))
    os.utime(rules, (stamp, stamp))
    os.kill(dash.proc.popen.pid, signal.SIGHUP)
    wait_until(lambda: dash.get("/api/alerts/firing")[1]["rules_error"] is None, WAIT, "reload")
    send(publisher, "dev-a", [30, 55], first_seq=10)
    wait_until(lambda: len(receiver.got) == 2, WAIT, "the new rule")
    assert titles(receiver)[1] == "[FIRING] very hot — dev-a"


def test_alert_history_and_state_in_postgresql(postgres: support.Postgres) -> None:
    store = open_store(postgres.new_database())
    alerts = AlertStore.beside(store)
    try:
        ids = [alerts.add({"ts": float(i), "rule": "r", "device": "d", "metric": "m",
                           "state": "firing", "value": i}) for i in range(5)]  # fmt: skip
        page = alerts.page(None, 2)
        assert [a["value"] for a in page] == [4, 3] and page[0]["id"] == ids[-1]
        assert [a["value"] for a in alerts.page(page[-1]["id"], 10)] == [2, 1, 0]
        assert [a["value"] for a in alerts.after(ids[2], 10)] == [3, 4]
        alerts.save_states({"k": {"state": "firing", "since": 1.0}})
        alerts.save_states({"k": {"state": "ok", "since": 2.0}})
        assert alerts.load_states() == {"k": {"state": "ok", "since": 2.0}}
    finally:
        alerts.close()
        store.close()


def test_a_store_that_cannot_write_fires_and_resolves_when_it_writes_again(
    procs: Procs, broker: Broker, publisher: Publisher, receiver: HttpReceiver, tmp_path: Path
) -> None:
    rules = rules_file(
        tmp_path / "alerts.toml", receiver, '[[rule]]\nname = "store"\nkind = "store"\n'
    )
    dash = start_dashboard(procs, broker, tmp_path / "dash", "--alerts", str(rules))
    send(publisher, "dev-a", [20])
    wait_until(lambda: dash.get("/api/devices")[1], WAIT, "a first reading stored")
    # Damage the real store from outside, as a broken disk or a bad migration would.
    with sqlite3.connect(tmp_path / "dash" / "history.sqlite3", timeout=30) as conn:
        conn.execute("DROP TABLE samples")
    send(publisher, "dev-a", [21], first_seq=1)
    wait_until(lambda: receiver.got, WAIT, "store alert")
    assert titles(receiver) == ["[FIRING] store"]
    assert "no such table: samples" in messages(receiver)[0]["message"]
    with sqlite3.connect(tmp_path / "dash" / "history.sqlite3", timeout=30) as conn:
        (samples,) = re.findall(r"CREATE TABLE samples \(.*?\) WITHOUT ROWID;", SCHEMA, re.S)
        conn.executescript(samples)
    send(publisher, "dev-a", [22], first_seq=2)
    wait_until(lambda: len(receiver.got) == 2, WAIT, "store alert resolved")
    assert titles(receiver)[1] == "[RESOLVED] store"
