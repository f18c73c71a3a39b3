"""Both /metrics endpoints, checked by Prometheus' own promtool and parsed back with
prometheus_client's parser: HELP/TYPE on every family, each declared counter at zero
before any event, escaped label values, process and build metrics, and each device's
latest value as a labelled gauge — from the real bridge and dashboard processes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import iotpipe
from iotpipe.bridge.metrics import COUNTERS as BRIDGE_COUNTERS
from iotpipe.counters import Counters
from iotpipe.dashboard.metrics import COUNTERS as DASHBOARD_COUNTERS
from iotpipe.exposition import CountersCollector, Declared, registry, render
from tests import test_dashboard_support as support
from tests.conftest import Broker, Procs, free_port, port_open, start_bridge, wait_until
from tests.test_pipeline import FakeWire

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed: `apt-get install prometheus` (./dev.sh test does it)",
)


def promtool_check(text: str) -> None:
    """`promtool check metrics` exits 0 and complains about nothing (lint included)."""
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    said = (done.stdout + done.stderr).decode()
    assert done.returncode == 0 and not said.strip(), f"promtool exit {done.returncode}: {said}"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=15) as answer:
        assert answer.headers.get_content_type() == "text/plain"
        return str(answer.read().decode())


def assert_declared_at_zero(
    text: str, prefix: str, declared: dict[str, Declared], started: set[str]
) -> None:
    """Each declared counter has its HELP and, if unlabelled, a sample: 0 unless it is one
    of those that ``started`` counts on the way up (a port opened, a broker connection)."""
    helps = {f.name: f.documentation for f in text_string_to_metric_families(text)}
    for name, what in declared.items():
        assert helps.get(f"{prefix}_{name}") == what.help, f"{name}: HELP/TYPE missing"
        if not (what.labelled or what.reasons):
            found = value(text, f"{prefix}_{name}_total")
            assert found == 0 or (name in started and found is not None), (name, found)
        for reason in what.reasons:
            assert value(text, f"{prefix}_{name}_total", reason=reason) == 0, (name, reason)


def assert_process_and_build(text: str, component: str) -> None:
    build = [
        s
        for f in text_string_to_metric_families(text)
        if f.name == "iotpipe_build_info"
        for s in f.samples
    ]
    assert build == [
        Sample(
            "iotpipe_build_info",
            {
                "version": iotpipe.__version__,
                "component": component,
                "python": build[0].labels["python"] if build else "",
            },
            1.0,
        )
    ]
    assert (value(text, "process_resident_memory_bytes") or 0) > 1_000_000
    assert value(text, "process_cpu_seconds_total") is not None


def test_every_counter_the_code_counts_is_declared_with_help() -> None:
    """A counter only counted on its first event would be missing from scrapes before it.
    The transport counts on the counters of the process that uses it: both declare those."""
    pattern = re.compile(r"counters\.inc\(\s*\"(\w+)\"")
    for folder, declared in (("bridge", BRIDGE_COUNTERS), ("dashboard", DASHBOARD_COUNTERS)):
        counted = {
            name
            for where in (folder, "transport")
            for path in (ROOT / "iotpipe" / where).glob("*.py")
            for name in pattern.findall(path.read_text())
        }
        assert counted, folder
        missing = counted - set(declared)
        assert not missing, f"declare {sorted(missing)} in {folder}/metrics.py COUNTERS"


@needs_promtool
def test_any_reason_text_is_escaped_and_an_undeclared_counter_still_exported() -> None:
    counters = Counters("iotpipe_test")
    odd = 'a "quoted"\\ back\nslash'
    counters.inc("errors", odd, 2)
    counters.inc("made_up_later")
    declared = {"errors": Declared("Errors, by what went wrong", labelled=True)}
    text = render(registry("test", CountersCollector(counters, declared))).decode()
    promtool_check(text)
    assert r'reason="a \"quoted\"\\ back\nslash"' in text
    assert value(text, "iotpipe_test_errors_total", reason=odd) == 2
    assert value(text, "iotpipe_test_made_up_later_total") == 1
    assert "# HELP iotpipe_test_made_up_later_total made_up_later (not described yet)" in text


def _hello(device: str) -> bytes:
    hello = {
        "type": "hello",
        "device": device,
        "boot": "0a1b2c3d",
        "uptime_ms": 1,
        "fw": "0.2.0",
        "board": "fake",
        "sensors": ["sim"],
        "units": {"t": "°C"},
        "interval_ms": 60_000,
    }
    return json.dumps(hello).encode() + b"\n"


def _reading(seq: int, t: float, device: str) -> bytes:
    return (
        b'{"type":"reading","device":"%s","boot":"0a1b2c3d","seq":%d,"uptime_ms":%d,'
        b'"metrics":{"t":%s}}\n' % (device.encode(), seq, seq * 10 + 5, repr(t).encode())
    )


@needs_promtool
def test_the_bridge_endpoint_passes_promtool_before_and_after_traffic(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    sub = subscribe("iotpipe/promb/telemetry")
    board = FakeWire(tmp_path / "tty")
    port = free_port()
    extra = ("--device-id", "promb", "--metrics", f"127.0.0.1:{port}")
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *extra)
    wait_until(lambda: port_open(port) or bridge.popen.poll() is not None, 30, "the endpoint")
    url = f"http://127.0.0.1:{port}/metrics"

    before = scrape(url)
    promtool_check(before)
    assert_declared_at_zero(
        before,
        "iotpipe_bridge",
        dict(BRIDGE_COUNTERS),
        {"port_opens", "connects", "replays_asked", "replays_answered", "replayed_by_board"},
    )
    assert_process_and_build(before, "bridge")
    assert value(before, "iotpipe_bridge_mqtt_connected") == 0

    board.send(_hello("promb") + _reading(1, 21.5, "promb") + b"{not json\n")
    board.send(_reading(2, 22.25, "promb"))
    wait_until(lambda: len(sub.on("promb/telemetry")) == 2, 60, "both readings published")
    wait_until(lambda: value(scrape(url), "iotpipe_bridge_published_total") == 2, 60, "acks")

    after = scrape(url)
    promtool_check(after)
    assert value(after, "iotpipe_bridge_lines_total") == 4
    assert value(after, "iotpipe_bridge_accepted_total", reason="reading") == 2
    assert value(after, "iotpipe_bridge_accepted_total", reason="hello") == 1
    assert value(after, "iotpipe_bridge_rejected_total", reason="not_json") == 1
    assert value(after, "iotpipe_bridge_spooled_total") == 2
    assert value(after, "iotpipe_bridge_mqtt_connected") == 1
    assert value(after, "iotpipe_bridge_spool_rows") == 0


@needs_promtool
def test_the_dashboard_endpoint_passes_promtool_and_exports_each_devices_latest_values(
    procs: Procs, broker: Broker, tmp_path: Path
) -> None:
    dash = support.start_dashboard(procs, broker, tmp_path / "dash")
    before = dash.get("/metrics")[1]
    promtool_check(before)
    assert_declared_at_zero(before, "iotpipe_dashboard", dict(DASHBOARD_COUNTERS), set())
    assert_process_and_build(before, "dashboard")
    assert value(before, "iotpipe_dashboard_mqtt_connected") == 1
    assert "iotpipe_device_reading{" not in before

    odd = 'in"ch\\\nx'  # a unit is free text: quote, backslash, newline must be escaped
    publisher = support.Publisher(broker)
    try:
        meta = {"units": {"temperature": "°C", "depth": odd}, "interval_ms": 1000}
        publisher.send("iotpipe/dev-p/meta", json.dumps(meta).encode(), retain=True)
        publisher.send("iotpipe/dev-p/status", b"online", retain=True)
        t0 = time.time() - 30
        publisher.reading(support.reading("dev-p", 1, t0, temperature=19.0, depth=1.0))
        publisher.reading(support.reading("dev-p", 2, t0 + 1, temperature=20.75, depth=-3.5))
        publisher.reading(support.reading("dev-q", 1, t0 + 2, humidity=55.5))
        publisher.send("iotpipe/dev-p/telemetry", b"\xff not json")

        def stored() -> float | None:
            return value(dash.get("/metrics")[1], "iotpipe_dashboard_stored_total")

        wait_until(lambda: stored() == 3, 60, "three readings stored")
    finally:
        publisher.close()

    after = dash.get("/metrics")[1]
    promtool_check(after)
    reading = "iotpipe_device_reading"
    assert value(after, reading, device="dev-p", metric="temperature", unit="°C") == 20.75
    assert value(after, reading, device="dev-p", metric="depth", unit=odd) == -3.5
    assert value(after, reading, device="dev-q", metric="humidity", unit="") == 55.5
    assert r'unit="in\"ch\\\nx"' in after
    seen = value(after, "iotpipe_device_last_reading_timestamp_seconds", device="dev-p")
    assert seen == pytest.approx(t0 + 1, abs=0.001)
    assert value(after, "iotpipe_device_online", device="dev-p") == 1
    assert value(after, "iotpipe_dashboard_received_total") == 3
    assert value(after, "iotpipe_dashboard_rejected_total", reason="not_json") == 1


def test_docs_list_every_counter_with_its_help_text() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    for prefix, declared in (
        ("iotpipe_bridge", BRIDGE_COUNTERS),
        ("iotpipe_dashboard", DASHBOARD_COUNTERS),
    ):
        for name, what in declared.items():
            assert f"| `{prefix}_{name}_total` | {what.help} |" in doc, name
    for family in ("iotpipe_device_reading", "iotpipe_build_info", "scrape_configs:"):
        assert family in doc, family
    assert "docs/monitoring.md" in (ROOT / "README.md").read_text()


@needs_promtool
def test_the_docs_scrape_config_and_alert_rules_pass_promtool(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "monitoring.md").read_text(), re.S)
    (config,) = [b for b in blocks if "scrape_configs:" in b]
    (rules,) = [b for b in blocks if "groups:" in b]
    (tmp_path / "prometheus.yml").write_text(config)
    (tmp_path / "rules.yml").write_text(rules)
    for what, name in (("config", "prometheus.yml"), ("rules", "rules.yml")):
        argv = [PROMTOOL, "check", what, name]
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
