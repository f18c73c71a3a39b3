"""Lint, format and type checks as tests, so the README's one test command runs them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

HOST_CODE = ["iotpipe", "bridge", "broker", "dashboard", "tests", "benchmarks"]


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


def _package_tree(tmp_path: Path) -> Path:
    """The installed layout (iotpipe.bridge from bridge/, …) as links, for mypy to read:
    mypy cannot follow setuptools' editable-install import hooks."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    tree = tmp_path / "iotpipe"
    tree.mkdir()
    for entry in (ROOT / "iotpipe").iterdir():
        if entry.name != "__pycache__":
            (tree / entry.name).symlink_to(entry)
    for package, folder in package_dir.items():
        name = package.removeprefix("iotpipe.")
        if package != "iotpipe" and name != "firmware":  # firmware is MicroPython
            (tree / name).symlink_to(ROOT / folder)
    return tree


def test_host_code_type_checks_strictly(tmp_path: Path) -> None:
    tree = _package_tree(tmp_path)
    result = _run(
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(tmp_path / "cache"),
        str(tree),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
