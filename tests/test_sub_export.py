"""`iotpipe sub` (live messages, decoded and aligned, bad ones shown as such) and
`iotpipe export` (a device's history from the dashboard's store as CSV or Parquet)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.publish as publish
import pytest

from iotpipe.commands.export import moment
from iotpipe.commands.sub import Formatter
from iotpipe.dashboard.export_rows import BATCH
from iotpipe.dashboard.sqlite_store import SQLiteStore
from iotpipe.topics import Telemetry
from tests.conftest import Broker, free_port

T0 = 1_763_700_000.0


def iotpipe(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IOTPIPE_")}
    clean["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return subprocess.run(
        [sys.executable, "-m", "iotpipe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        cwd=tmp_path,
    )


def reading(device: str, seq: int, **metrics: float) -> bytes:
    return Telemetry(device, "0a1b2c3d", seq, T0 + seq, seq * 1000, metrics).to_json()


def test_sub_prints_readings_decoded_and_aligned_and_bad_payloads_as_such(
    tmp_path: Path, broker: Broker
) -> None:
    # Retained, so they are there whenever `sub` subscribes: no race with its start.
    messages = [
        ("iotpipe/kitchen/telemetry", reading("kitchen", 7, temperature=21.5, humidity=40)),
        ("iotpipe/greenhouse-north/telemetry", reading("greenhouse-north", 8, temperature=9.25)),
        ("iotpipe/broken/telemetry", b'{"device": "broken", "metrics": '),
        ("iotpipe/kitchen/status", b"online"),
    ]
    publish.multiple(
        [{"topic": t, "payload": p, "qos": 1, "retain": True} for t, p in messages],
        port=broker.port,
    )
    done = iotpipe(tmp_path, "sub", "--broker", broker.url, "--count", "4")
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.splitlines(), key=lambda text: text.split()[1])
    assert len(lines) == 4, done.stdout
    broken, greenhouse, kitchen_reading, kitchen_status = (
        lines if "telemetry" in lines[2] else [lines[0], lines[1], lines[3], lines[2]]
    )
    assert "✗ bad payload (not_json" in broken and "Traceback" not in done.stderr
    assert "seq 8" in greenhouse and "temperature=9.25" in greenhouse
    assert "temperature=21.5" in kitchen_reading and "humidity=40" in kitchen_reading
    assert kitchen_status.rstrip().endswith("online")
    assert kitchen_reading.startswith(time.strftime("%H:%M:%S", time.gmtime(T0 + 7)))
    # aligned: the kind column starts at the same place on every line
    kinds = ("telemetry", "status")
    starts = {text.index(kind) for text in lines for kind in kinds if kind in text}
    assert len(starts) == 1, done.stdout


def test_sub_without_a_broker_says_so(tmp_path: Path) -> None:
    done = iotpipe(tmp_path, "sub", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--count", "1")
    assert done.returncode == 1
    assert done.stderr.startswith("iotpipe: cannot reach the broker")
    assert "Traceback" not in done.stderr


def test_the_formatter_never_raises_on_what_arrives() -> None:
    formatter = Formatter("iotpipe")
    odd = [
        ("iotpipe/kitchen/telemetry", b"\xff\xfe not utf-8"),
        ("iotpipe/kitchen/telemetry", b'{"device":"kitchen","metrics":{"t":NaN}}'),
        ("iotpipe/kitchen/meta", b'{"fw": "0.2.0",\n "sensors": ["sim"]}'),
        ("iotpipe/kitchen/status", b""),
        ("homeassistant/sensor/kitchen/t/config", b"x" * 500),
        ("iotpipe/bridge/host-ttyUSB0/status", b"offline"),
    ]
    lines = [formatter.line(topic, payload, T0) for topic, payload in odd]
    assert "✗ bad payload (not_json" in lines[0]
    assert "✗ bad payload" in lines[1]
    assert lines[2].endswith('{"fw":"0.2.0","sensors":["sim"]}')
    assert lines[3].endswith("(cleared)")
    assert lines[4].endswith("…") and len(lines[4]) < 200
    assert "iotpipe/bridge/host-ttyUSB0/status  offline" in lines[5]


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A dashboard data directory with 25,000 readings of two metrics (more than a batch)."""
    data = tmp_path / "dashboard"
    store = SQLiteStore(data / "history.sqlite3")
    store.write(
        [
            Telemetry("kitchen", "0a1b2c3d", i, T0 + i, i, {"temp": 20 + i / 1000, "hum": 40.0})
            for i in range(25_000)
        ]
    )
    store.write([Telemetry("attic", "0a1b2c3d", 1, T0, 1, {"temp": 5.0})])
    store.close()
    return data


def test_export_writes_every_reading_of_the_device_as_csv(tmp_path: Path, history: Path) -> None:
    assert BATCH < 25_000  # the export crosses batch boundaries
    done = iotpipe(tmp_path, "export", "--device", "kitchen", "--data", str(history))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == 50_000
    assert {r["device"] for r in rows} == {"kitchen"}
    temps = [float(r["value"]) for r in rows if r["metric"] == "temp"]
    assert temps[0] == 20.0 and temps[-1] == pytest.approx(20 + 24_999 / 1000)
    assert "wrote 50,000 rows of kitchen to stdout" in done.stderr


def test_export_picks_a_range_and_a_metric_into_a_file(tmp_path: Path, history: Path) -> None:
    out = tmp_path / "k.csv"
    done = iotpipe(
        tmp_path, "export", "--device", "kitchen", "--data", str(history), "--metric", "temp",
        "--since", str(T0 + 10), "--until", "2025-11-21T04:40:20+00:00", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "ts,device,metric,value,boot,seq,uptime_ms,flag"
    assert lines[1] == f"{T0 + 10:.3f},kitchen,temp,20.01,0a1b2c3d,10,10,"
    assert len(lines) == 1 + 10  # since <= ts < until


def test_export_says_what_is_wrong(tmp_path: Path, history: Path) -> None:
    unknown = iotpipe(tmp_path, "export", "--device", "cellar", "--data", str(history))
    assert unknown.returncode == 1 and "known: attic, kitchen" in unknown.stderr
    nothing = iotpipe(tmp_path, "export", "--device", "kitchen", "--data", str(tmp_path / "x"))
    assert nothing.returncode == 1 and "no dashboard history in" in nothing.stderr
    metric = iotpipe(
        tmp_path, "export", "--device", "attic", "--data", str(history), "--metric=hum"
    )
    assert metric.returncode == 1 and "it has: temp" in metric.stderr


def test_export_finds_the_history_of_iotpipe_up_in_its_data_directory(
    tmp_path: Path, history: Path
) -> None:
    done = iotpipe(tmp_path, "export", "--device", "attic", "--data", str(history.parent))
    assert done.returncode == 0 and done.stdout.count("\n") == 2


def test_parquet_without_pyarrow_is_a_clear_message(tmp_path: Path, history: Path) -> None:
    hide = tmp_path / "no-pyarrow"
    (hide / "pyarrow").mkdir(parents=True)
    (hide / "pyarrow" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    done = iotpipe(
        tmp_path, "export", "--device", "kitchen", "--data", str(history), "--format", "parquet",
        env={"PYTHONPATH": str(hide)},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("iotpipe: --format parquet needs pyarrow, which is not installed")
    assert not (tmp_path / "kitchen.parquet").exists()


def test_parquet_holds_the_same_rows_as_csv(tmp_path: Path, history: Path) -> None:
    parquet = pytest.importorskip("pyarrow.parquet", reason="pyarrow is optional")
    done = iotpipe(
        tmp_path, "export", "--device=kitchen", "--data", str(history), "--format=parquet"
    )
    assert done.returncode == 0, done.stderr
    table = parquet.read_table(tmp_path / "kitchen.parquet")
    assert table.num_rows == 50_000
    assert table.column_names == ["ts", "device", "metric", "value"]
    assert table.slice(0, 1).to_pylist() == [
        {"ts": T0, "device": "kitchen", "metric": "hum", "value": 40.0}
    ]


def test_moments_are_seconds_dates_or_ages() -> None:
    assert moment("1763700000") == T0
    assert moment("2025-11-21T04:40:00") == T0  # UTC unless it says
    assert moment("2025-11-21T05:40:00+01:00") == T0
    assert abs(moment("7d") - (time.time() - 7 * 86400)) < 5
    with pytest.raises(Exception, match="Unix seconds"):
        moment("yesterday")


def test_export_help_names_its_flags_and_defaults(tmp_path: Path) -> None:
    text = " ".join(iotpipe(tmp_path, "export", "--help").stdout.split())
    for expected in ("--device ID", "--format {csv,parquet}", "(default: csv)", "--since WHEN"):
        assert expected in text
