"""The systemd units against systemd's own tools: `systemd-analyze security --offline`
scores each at most 2.0 (of 10), `systemd-analyze verify` accepts them, the bridge may
open serial ports and nothing else, and every Documentation= address is a file that
docs/deploy.md's install steps put there."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Procs, free_port, port_open, start_broker, wait_until

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (Debian package systemd)"
)


def keys(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def instance(unit: Path, where: Path) -> Path:
    """A copy to analyse; a template gets an instance name, as `systemctl` would."""
    copy = where / unit.name.replace("@.", "@kitchen.")
    copy.write_text(unit.read_text())
    return copy


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_each_unit_scores_at_most_2_in_systemd_analyze_security(unit: Path, tmp_path: Path) -> None:
    assert ANALYZE is not None
    copy = instance(unit, tmp_path)
    done = subprocess.run(
        [
            ANALYZE,
            "security",
            "--offline=yes",
            "--no-pager",
            f"--threshold={MAX_EXPOSURE * 10:.0f}",
            str(copy),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    score = re.search(
        rf"Overall exposure level for {re.escape(copy.name)}: (\d+\.\d+)", done.stdout
    )
    assert score, done.stdout + done.stderr
    exposed = "\n".join(line for line in done.stdout.splitlines() if line.startswith("✗"))
    assert float(score[1]) <= MAX_EXPOSURE, f"{unit.name} scores {score[1]}:\n{exposed}"
    assert done.returncode == 0, done.stderr  # --threshold: systemd's own verdict agrees
    print(f"{unit.name}: {score[1]}")


@needs_analyze
def test_systemd_analyze_verify_accepts_each_unit(tmp_path: Path) -> None:
    assert ANALYZE is not None
    venv_iotpipe = shutil.which("iotpipe") or str(Path(sys.executable).parent / "iotpipe")
    copies = []
    for unit in UNITS:
        copy = instance(unit, tmp_path)
        copy.write_text(copy.read_text().replace("/usr/local/bin/iotpipe", venv_iotpipe))
        copies.append(str(copy))
    done = subprocess.run(
        [ANALYZE, "verify", "--man=no", *copies],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_only_the_bridge_sees_devices_and_only_serial_ports() -> None:
    for unit in UNITS:
        found = keys(unit)
        assert "Group" not in found, f"{unit.name}: Group= would re-own the StateDirectory"
        assert found["User"] == ["iotpipe"]
        if unit.name.startswith("iotpipe-bridge"):  # every board's, and the per-board template
            assert found["SupplementaryGroups"] == ["dialout"]
            assert found["DevicePolicy"] == ["closed"]
            assert sorted(found["DeviceAllow"]) == ["char-ttyACM rw", "char-ttyUSB rw"]
            assert "PrivateDevices" not in found, "it would hide the serial ports"
        else:
            assert found["PrivateDevices"] == ["yes"]
            assert "SupplementaryGroups" not in found and "DeviceAllow" not in found


def test_the_bridge_starts_after_the_dashboard_so_its_session_exists_first() -> None:
    bridges = [u for u in UNITS if u.name.startswith("iotpipe-bridge")]
    assert [u.name for u in bridges] == ["iotpipe-bridge.service", "iotpipe-bridge@.service"]
    for bridge in bridges:
        found = keys(bridge)
        after = " ".join(found["After"]).split()
        wants = " ".join(found["Wants"]).split()
        assert "iotpipe-dashboard.service" in after and "iotpipe-dashboard.service" in wants
    assert "iotpipe-broker.service" in " ".join(
        keys(ROOT / "deploy/systemd/iotpipe-dashboard.service")["After"]
    )


def _doc_install_argv(prefix: Path) -> list[str]:
    """docs/deploy.md's step that installs the documentation, aimed at ``prefix``."""
    lines = [
        line for line in DEPLOY_DOC.read_text().splitlines() if "/usr/share/doc/iotpipe" in line
    ]
    (step,) = [line for line in lines if line.startswith("sudo install ")]
    argv = shlex.split(step.replace("/usr/share/doc/iotpipe", str(prefix)))[1:]  # no sudo
    # The shell would expand docs/*.md in the clone, as the user's does.
    return [a for arg in argv for a in (_expand(arg) if "*" in arg else [arg])]


def _expand(pattern: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern))


def test_every_documentation_address_resolves_once_installed_as_deploy_md_says(
    tmp_path: Path,
) -> None:
    prefix = tmp_path / "usr-share-doc-iotpipe"
    subprocess.run(_doc_install_argv(prefix), cwd=ROOT, check=True, timeout=60)
    for unit in UNITS:
        addresses = " ".join(keys(unit)["Documentation"]).split()
        assert addresses, unit.name
        for address in addresses:
            assert address.startswith("file:///usr/share/doc/iotpipe/"), address
            installed = prefix / address.removeprefix("file:///usr/share/doc/iotpipe/")
            assert installed.is_file(), f"{unit.name}: {address} is not installed"
            assert installed.read_text().startswith("# "), installed


def test_the_dashboard_unit_counts_as_started_only_once_subscribed(
    procs: Procs, tmp_path: Path
) -> None:
    """iotpipe-ready, the dashboard unit's ExecStartPost: it waits while the dashboard
    serves HTTP but has no broker, and returns 0 once the dashboard is on it."""
    (dashboard_unit,) = [u for u in UNITS if u.name == "iotpipe-dashboard.service"]
    assert keys(dashboard_unit)["ExecStartPost"] == ["/usr/local/bin/iotpipe-ready"]
    mqtt, http = free_port(), free_port()
    env = {"IOTPIPE_HTTP": f"127.0.0.1:{http}"}
    ready = procs.start("ready", [sys.executable, "-P", "-m", "iotpipe.ready"], env)
    procs.iotpipe("dashboard", "dashboard", "--broker", f"mqtt://127.0.0.1:{mqtt}",
                  "--http", f"127.0.0.1:{http}", "--data", str(tmp_path / "dash"))  # fmt: skip
    wait_until(lambda: port_open(http), 30, "the dashboard's HTTP")
    time.sleep(1.0)  # several polls of /healthz: serving, but not on a broker
    assert ready.popen.poll() is None, ready.output()
    start_broker(procs, tmp_path / "broker", mqtt, insecure=True)
    wait_until(lambda: ready.popen.poll() is not None, 60, "iotpipe-ready to return")
    assert ready.popen.returncode == 0, ready.output()


def test_iotpipe_ready_gives_up_with_a_reason(tmp_path: Path) -> None:
    env = {**os.environ, "IOTPIPE_HTTP": f"127.0.0.1:{free_port()}"}
    argv = [sys.executable, "-P", "-m", "iotpipe.ready", "--timeout", "0.5"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout.startswith("iotpipe-ready: after 0.5 s, the dashboard at http://127.0.0.1:")
    assert "does not answer" in done.stdout
