"""The raw REPL a virtual board offers mpremote, byte for byte, without processes; and
the serial port table shared with the bridge."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from iotpipe import serialports
from iotpipe.board import agent
from iotpipe.board.rawrepl import PASTE_WINDOW, RAW_BANNER, SOFT_REBOOT, Mode, Repl
from iotpipe.commands import board_ports
from iotpipe.errors import UserError


class FakeBoard:
    def __init__(self) -> None:
        self.sent = bytearray()
        self.ran: list[tuple[bytes, bool]] = []
        self.interrupts = 0
        self.reboots: list[bool] = []

    def send(self, data: bytes) -> None:
        self.sent += data

    def execute(self, code: bytes, raw: bool) -> None:
        self.ran.append((code, raw))

    def interrupt(self) -> None:
        self.interrupts += 1

    def soft_reboot(self, run_main: bool) -> None:
        self.reboots.append(run_main)

    def take(self) -> bytes:
        out, self.sent = bytes(self.sent), bytearray()
        return out


@pytest.fixture
def raw() -> tuple[Repl, FakeBoard]:
    board = FakeBoard()
    repl = Repl(board, b"BANNER\r\n")
    repl.start()
    repl.feed(b"\r\x01")  # what mpremote's enter_raw_repl sends after its Ctrl-C
    assert board.take().endswith(b"\r\n" + RAW_BANNER + b">")
    return repl, board


def test_a_raw_block_is_answered_ok_then_run_then_prompted(raw: tuple[Repl, FakeBoard]) -> None:
    repl, board = raw
    repl.feed(b"print(1)\x04")
    assert board.take() == b"OK" and board.ran == [(b"print(1)", True)]
    repl.finished()
    assert board.take() == b">"


def test_raw_paste_mode_grants_windows_and_acknowledges_the_end(
    raw: tuple[Repl, FakeBoard],
) -> None:
    repl, board = raw
    repl.feed(b"\x05A\x01")
    assert board.take() == b"R\x01" + PASTE_WINDOW.to_bytes(2, "little") + b"\x01"
    code = b"x" * (PASTE_WINDOW * 2 + 5)
    repl.feed(code)
    assert board.take() == b"\x01\x01", "one more window after each window consumed"
    repl.feed(b"\x04")
    assert board.take() == b"\x04" and board.ran == [(code, True)]
    repl.finished()
    assert board.take() == b">" and repl.mode is Mode.RAW


def test_ctrl_d_on_an_empty_block_is_a_soft_reboot_into_the_raw_repl(
    raw: tuple[Repl, FakeBoard],
) -> None:
    repl, board = raw
    repl.feed(b"\x04")
    assert board.take() == b"OK\r\n" + SOFT_REBOOT + RAW_BANNER + b">"
    assert board.reboots == [False], "the firmware does not start in the raw REPL"


def test_ctrl_c_interrupts_running_code_and_later_bytes_wait(raw: tuple[Repl, FakeBoard]) -> None:
    repl, board = raw
    repl.feed(b"while True: pass\x04")
    repl.feed(b"\x03print(2)\x04")
    assert board.interrupts == 1 and len(board.ran) == 1
    repl.finished()
    assert board.ran[-1] == (b"print(2)", True), "the queued block runs after the first"


def test_friendly_repl_echoes_runs_lines_and_soft_reboots_into_the_firmware() -> None:
    board = FakeBoard()
    repl = Repl(board, b"BANNER\r\n")
    repl.start()
    assert board.take() == b"BANNER\r\n>>> "
    repl.feed(b"1+x\x7f2\r")
    assert board.take() == b"1+x\x08 \x082\r\n" and board.ran == [(b"1+2", False)]
    repl.finished()
    assert board.take() == b">>> "
    repl.feed(b"\x04")
    assert board.reboots == [True]


def test_end_marker_is_found_even_when_a_read_cuts_it() -> None:
    scanner = agent.EndScanner()
    out, ended = scanner.feed(b"hello\x04\x04" + agent.END[:5])
    assert (out, ended) == (b"hello\x04\x04", False)
    assert scanner.feed(agent.END[5:]) == (b"", True)
    assert scanner.feed(b"a\x00b") == (b"a\x00b", False), "a lone NUL is just output"


def _port(device: str, vid: int | None) -> SimpleNamespace:
    return SimpleNamespace(device=device, vid=vid, pid=1, description="d", serial_number="s1")


def test_ports_are_boards_by_usb_vendor_and_sorted() -> None:
    found = [
        _port("/dev/ttyUSB1", 0x1A86),
        _port("/dev/ttyS0", None),
        _port("/dev/ttyACM0", 0x2E8A),
        _port("/dev/ttyUSB0", 0x1234),
    ]
    boards = serialports.board_ports(lambda: found)
    assert [p.device for p in boards] == ["/dev/ttyACM0", "/dev/ttyUSB1"]
    assert boards[0].vendor == "Raspberry Pi"
    assert len(serialports.board_ports(lambda: found, everything=True)) == 4
    assert all(serialports.looks_like_board(v) for v in (0x303A, 0x10C4, 0x1A86, 0x0403, 0xF055))


def test_no_board_plugged_in_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serialports, "_comports", lambda: [_port("/dev/ttyS0", None)])
    with pytest.raises(UserError, match="data \\(not charge-only\\) cable"):
        board_ports.run(SimpleNamespace(all=False))


def test_firmware_doc_names_every_config_key_and_deploy_flag() -> None:
    import ast

    from iotpipe.commands import board_deploy
    from tests.conftest import ROOT, FlagRecorder

    doc = (ROOT / "docs" / "firmware.md").read_text()
    tree = ast.parse((ROOT / "firmware" / "boardconfig.py").read_text())
    keys = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "KEYS"
    )
    for key in keys:
        assert f"| `{key}` |" in doc, f"config key {key} is documented"
    parser = FlagRecorder()
    board_deploy.configure(parser)
    for action in parser.added:
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help", "--log-level"):
                assert flag in doc, f"deploy flag {flag} is documented"
