"""The `iotpipe` command as a user meets it: help, settings, errors in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from iotpipe.settings import SETTINGS, markdown_table
from tests.conftest import ROOT, free_port


def iotpipe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iotpipe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_every_command() -> None:
    result = iotpipe("--help")
    assert result.returncode == 0
    for command in ("up", "broker", "bridge", "dashboard", "board"):
        assert command in result.stdout


def test_configuration_doc_shows_every_setting_as_declared() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    table = doc.split("<!-- settings-table:start -->\n")[1].split("<!-- settings-table:end -->")[0]
    assert table == markdown_table()
    assert len(SETTINGS) == table.count("| `--")


def test_a_bad_environment_value_is_reported_like_a_bad_flag() -> None:
    result = iotpipe("bridge", "--serial", "/dev/null", env={"IOTPIPE_BROKER": "tcp://x"})
    assert result.returncode == 2
    assert "--broker" in result.stderr and "mqtt://" in result.stderr


def test_a_bad_flag_names_what_it_accepts() -> None:
    result = iotpipe("board", "virtual", "--link", "/tmp/x", "--rate", "-3")
    assert result.returncode == 2
    assert "must be a number above 0" in result.stderr


def test_broker_without_mosquitto_says_how_to_install_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-mosquitto")
    result = iotpipe(
        "broker", "--port", str(free_port()), "--data", str(tmp_path), "--mosquitto", missing
    )
    assert result.returncode == 1
    assert result.stderr.startswith("iotpipe: mosquitto is not installed")
    assert "apt-get install mosquitto" in result.stderr
    assert "Traceback" not in result.stderr
