"""What alert rules cost per reading, beside what parsing that reading costs.

    .venv/bin/python benchmarks/alerts_bench.py [--readings N] [--rules N]

The dashboard checks every stored reading against the rules in the writer thread, so
their cost adds to ingest. Measured in one process, in the same run: parsing N telemetry
payloads (``iotpipe.topics.parse_telemetry``, the reference: work every reading already
costs) and ``Alerts.check`` on the same readings with ``--rules`` threshold rules (with
hysteresis and "for") plus one rate rule, backed by a real SQLite alert store and a
notifier whose queue holds what fires. Printed: CPU µs per reading of each, their ratio,
and the peak RSS. Values wander around the thresholds, so some readings fire or resolve.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from iotpipe.counters import Counters
from iotpipe.dashboard.alert_store import AlertStore
from iotpipe.dashboard.alerts import Alerts
from iotpipe.dashboard.notify import Notifier
from iotpipe.dashboard.sqlite_store import SQLiteStore
from iotpipe.topics import Telemetry, parse_telemetry


def rules_text(n: int) -> str:
    rules = ['[destinations]\nnull = "json://127.0.0.1:9/"\n']
    for i in range(n):
        rules.append(
            f'[[rule]]\nname = "hot {i}"\nmetric = "temperature"\nabove = {30 + i}\n'
            f'hysteresis = 0.5\nfor = "{i % 3 + 1}s"\n'
        )
    rules.append('[[rule]]\nname = "rising"\nmetric = "temperature"\nrise = 5\nwithin = "10m"\n')
    return "".join(rules)


def payloads(n: int) -> list[bytes]:
    rng = random.Random(1)
    t0 = time.time()
    return [
        Telemetry(f"dev-{i % 20}", "0a1b2c3d", i, t0 + i, i * 1000, {
            "temperature": 30 + 5 * rng.random(), "humidity": 50.0}).to_json()
        for i in range(n)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--rules", type=int, default=10)
    args = parser.parse_args()
    raw = payloads(args.readings)
    start = time.process_time()
    readings = [parse_telemetry(p) for p in raw]
    parse_us = (time.process_time() - start) / len(raw) * 1e6
    with tempfile.TemporaryDirectory(prefix="alerts-bench-") as name:
        tmp = Path(name)
        (tmp / "alerts.toml").write_text(rules_text(args.rules))
        store = SQLiteStore(tmp / "history.sqlite3")
        counters = Counters("bench")
        alerts = Alerts(tmp / "alerts.toml", "iotpipe", AlertStore.beside(store),
                        Notifier(counters, 1.0), counters, "http://127.0.0.1:8080",
                        lambda topic, payload: None, lambda alert: None)  # fmt: skip
        start = time.process_time()
        for r in readings:
            alerts.check(r)
        check_us = (time.process_time() - start) / len(readings) * 1e6
        fired = counters.total("alerts")
        alerts.db.close()
        store.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"readings: {len(readings)}, rules: {args.rules} threshold + 1 rate, alerts: {fired}")
    print(f"parse_telemetry (reference): {parse_us:.1f} µs CPU per reading")
    print(f"Alerts.check:                {check_us:.1f} µs CPU per reading")
    print(f"ratio check / parse: {check_us / parse_us:.2f}; peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
