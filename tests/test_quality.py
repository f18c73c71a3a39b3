"""Lint, format and type checks as tests, so the README's one test command runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

HOST_CODE = ["iotpipe", "tests", "benchmarks"]


def _run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)


def _existing(paths: list[str]) -> list[str]:
    return [p for p in paths if (ROOT / p).exists()]


def test_ruff_finds_nothing_to_fix() -> None:
    result = _run(sys.executable, "-m", "ruff", "check", *_existing(HOST_CODE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_ruff_formatted() -> None:
    result = _run(sys.executable, "-m", "ruff", "format", "--check", *_existing(HOST_CODE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_host_code_type_checks_strictly(tmp_path: Path) -> None:
    result = _run(
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "iotpipe",
    )
    assert result.returncode == 0, result.stdout + result.stderr
