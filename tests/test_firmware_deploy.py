"""`iotpipe board deploy` and mpremote against a virtual board: the same raw REPL, file
copy and reset a real board goes through, with the real MicroPython unix port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from tests.conftest import Procs, start_virtual_board
from tests.test_firmware import BoardPort


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def link(procs: Procs, tmp_path: Path) -> Path:
    path = tmp_path / "tty"
    start_virtual_board(procs, path, "before", 5.0, "--fs", str(tmp_path / "flash"))
    return path


@pytest.fixture
def port(link: Path) -> Iterator[BoardPort]:
    board = BoardPort(link)
    yield board
    board.port.close()


@pytest.mark.parametrize("kind", [".mpy", ".py"])
def test_deploy_sets_device_id_and_interval_and_readings_go_on(
    link: Path, tmp_path: Path, kind: str
) -> None:
    extra = ["--no-mpy"] if kind == ".py" else []
    args = ["--port", str(link), "--board", "unix", "--device-id", "X", "--interval", "0.2"]
    result = run("iotpipe", "board", "deploy", *args, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"({kind})" in result.stdout and "X runs iotpipe firmware" in result.stdout
    flash = tmp_path / "flash"
    assert (flash / f"node{kind}").exists() and not (flash / "iotpipe.stop").exists()
    twin = "node.py" if kind == ".mpy" else "node.mpy"
    assert not (flash / twin).exists(), "no stale twin shadows the new file"

    board = BoardPort(link)
    board.ask("after", "info")
    board.collect(1.2)
    info = board.answers()["after"].result
    assert info["device"] == "X" and info["interval_ms"] == 200 and info["board"] == "unix"
    readings = board.readings()
    assert len(readings) >= 4 and {r.device for r in readings} == {"X"}
    seqs = [r.seq for r in readings]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    board.port.close()


def test_mpremote_runs_code_copies_files_and_reports_errors(link: Path, tmp_path: Path) -> None:
    mp = ["mpremote", "connect", str(link)]
    done = run(*mp, "exec", "import sys; print(sys.platform, 6 * 7)")
    assert done.returncode == 0 and done.stdout.strip() == "linux 42", done.stderr
    (tmp_path / "hello.txt").write_text("hi there\n" * 100)
    done = run(*mp, "cp", str(tmp_path / "hello.txt"), ":hello.txt", "+", "cat", ":/hello.txt")
    assert done.returncode == 0 and done.stdout.count("hi there") == 100, done.stderr
    assert (tmp_path / "flash" / "hello.txt").read_text() == "hi there\n" * 100, "/ is the flash"
    done = run(*mp, "exec", "1/0")
    assert done.returncode == 1 and "ZeroDivisionError" in done.stdout + done.stderr
    done = run(*mp, "ls")
    assert done.returncode == 0 and "main.py" in done.stdout


def test_ctrl_c_gives_the_repl_and_ctrl_d_restarts_the_firmware(port: BoardPort) -> None:
    port.collect(0.5)
    assert port.readings(), "the firmware runs"
    port.port.write(b"\x03")
    repl = _read_until(port.port, b">>> ")
    assert b"KeyboardInterrupt" in repl and repl.endswith(b">>> ")
    port.port.write(b"6*7\r")
    assert b"42\r\n>>> " in _read_until(port.port, b"42\r\n>>> ")
    port.port.write(b"\x04")
    assert b"soft reboot" in _read_until(port.port, b'"type":"hello"')
    port.collect(0.6)
    assert port.readings(), "the firmware runs again"


def _read_until(link: serial.Serial, ending: bytes, tries: int = 25) -> bytes:
    data = b""
    for _ in range(tries):
        data += link.read(4096)
        if ending in data:
            break
    return data


def test_the_reset_command_answers_then_the_board_boots_again(port: BoardPort) -> None:
    port.collect(0.5)
    first_boot = port.readings()[0].boot
    port.ask("rst", "reset")
    port.collect(2.0)
    assert port.answers()["rst"].ok
    boots = {r.boot for r in port.readings()}
    assert len(boots) == 2 and first_boot in boots, "readings go on under a new boot id"
