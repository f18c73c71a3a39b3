"""The package as users install it: a fresh virtualenv with a regular `pip install .`
(the install docs/deploy.md prescribes) and one with `pip install -e .` (./dev.sh's),
each running `iotpipe up` from inside the clone — where the clone's own `iotpipe/`
folder once shadowed the installed package and every child crashed — until a reading
reaches the dashboard. The wheel builds without a warning and carries the license.

The dependencies come from the package registry once, as wheels kept under
/var/cache/iotpipe/packaging/ (keyed by the requirement list); later runs install
offline from there, so only iotpipe itself is built each time."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Procs, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("IOTPIPE_CACHE", "/var/cache/iotpipe")) / "packaging"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The test's own pip settings (none): offline installs must not see the machine's indexes.
OFFLINE = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _requirements() -> list[str]:
    project = PYPROJECT["project"]
    return sorted(
        [*project["dependencies"], *project["optional-dependencies"]["board"]]
        + PYPROJECT["build-system"]["requires"]
    )


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """Wheels of every dependency, the [board] extra and the build backend."""
    reqs = _requirements()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    key = hashlib.sha256(json.dumps([tag, reqs]).encode()).hexdigest()[:16]
    house = CACHE / f"wheels-{key}"
    if (house / "complete").is_file():
        return house
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        pytest.skip(f"cannot cache wheels in {CACHE} ({exc}): run as root or set IOTPIPE_CACHE")
    partial = Path(f"{house}.partial-{os.getpid()}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            "-d",
            partial,
            *reqs,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.skip(f"cannot download the dependencies' wheels: {done.stderr.strip()[-500:]}")
    (partial / "complete").write_text("\n".join(reqs) + "\n")
    try:
        partial.rename(house)
    except OSError:  # another run finished first: use its copy
        shutil.rmtree(partial, ignore_errors=True)
    return house


def _clone(where: Path) -> Path:
    """The working tree as a user's clone holds it (tracked and new files, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            target = where / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return where


def _pip(venv: Path, *args: str, cwd: Path, house: Path) -> str:
    argv = [str(venv / "bin" / "pip"), "install", "--no-index", "--find-links", str(house), *args]
    done = subprocess.run(argv, cwd=cwd, env=OFFLINE, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture
def timings() -> Iterator[dict[str, float]]:
    spent: dict[str, float] = {}
    yield spent
    print(" ".join(f"{k}={v:.1f}s" for k, v in spent.items()))


@pytest.mark.parametrize("kind", ["regular", "editable"])
def test_iotpipe_up_works_from_inside_the_clone_with_either_install(
    kind: str, wheelhouse: Path, procs: Procs, tmp_path: Path, timings: dict[str, float]
) -> None:
    clone = _clone(tmp_path / "clone")
    # What made `python -m iotpipe` crash here once: a clone's iotpipe/ shadowing the installed
    # package without the parts mapped in from elsewhere. Only the firmware is mapped now.
    assert (clone / "iotpipe" / "dashboard").is_dir() and not (
        clone / "iotpipe" / "firmware"
    ).exists()
    started = time.monotonic()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    timings["venv"] = time.monotonic() - started
    started = time.monotonic()
    output = _pip(
        venv, *(["-e"] if kind == "editable" else []), ".[board]", cwd=clone, house=wheelhouse
    )
    timings[f"pip install ({kind})"] = time.monotonic() - started
    if kind == "regular":
        assert "warning" not in output.lower(), output  # e.g. setuptools' license notices

    mqtt, http, data = free_port(), free_port(), tmp_path / "data"
    started = time.monotonic()
    up = procs.start(
        f"up-{kind}",
        # env -C: `iotpipe up` run from inside the clone, as a user would after `cd iotpipe`.
        ["env", "-C", str(clone), str(venv / "bin" / "iotpipe"), "up", "--mqtt-port", str(mqtt),
         "--http", f"127.0.0.1:{http}", "--data", str(data), "--rate", "5"],
    )  # fmt: skip

    def a_reading() -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/devices", timeout=15) as r:
                listed = json.loads(r.read())
        except OSError:
            assert up.popen.poll() is None, up.output()
            return None
        return next((d for d in listed if d["id"] == "virtual-1" and d.get("last")), None)

    wait_until(a_reading, 60, f"a reading on the dashboard ({kind} install)")
    timings["up to a reading"] = time.monotonic() - started
    device = a_reading()
    assert device is not None
    last = device["last"]
    assert isinstance(last, dict) and last["metrics"], device
    assert all(isinstance(v, int | float) for v in last["metrics"].values()), last

    assert "Traceback" not in up.output() and "ModuleNotFoundError" not in up.output()
    # `python -m iotpipe` in the clone imports the clone's iotpipe/ first: it finds the firmware.
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "from iotpipe.board.virtual import firmware_dir; print(firmware_dir())"],
        cwd=clone, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert found.returncode == 0 and Path(found.stdout.strip(), "main.py").is_file(), found
    assert up.stop(signal.SIGINT, timeout=60) == 0, up.output()
    logs = "".join(p.read_text(errors="replace") for p in data.rglob("*.log"))
    assert logs and "ModuleNotFoundError" not in logs, logs[-2000:]


def test_the_wheel_builds_without_warnings_and_carries_the_mit_license(
    wheelhouse: Path, tmp_path: Path
) -> None:
    clone = _clone(tmp_path / "clone")
    out = tmp_path / "dist"
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--find-links",
            str(wheelhouse), "-w", str(out), str(clone)]  # fmt: skip
    done = subprocess.run(argv, env=OFFLINE, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    (wheel,) = out.glob("iotpipe-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        meta = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        assert "License-Expression: MIT\n" in meta and "License-File: LICENSE\n" in meta
        license_text = whl.read(next(n for n in names if n.endswith("/licenses/LICENSE")))
    assert license_text == (ROOT / "LICENSE").read_bytes()
    assert license_text.startswith(b"MIT License")
    for data in ("iotpipe/dashboard/templates/index.html", "iotpipe/dashboard/static/app.js",
                 "iotpipe/broker/conf.d/iotpipe.conf", "iotpipe/firmware/main.py"):  # fmt: skip
        assert data in names, data


def test_every_package_of_the_tree_is_named_for_the_wheel() -> None:
    """pyproject.toml names its packages one by one: a new one left out would be missing
    from every regular install while the clone's tests still import it."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "iotpipe").rglob("__init__.py")
    }
    assert found - listed == set()
