"""A Docker Engine of the test's own for tests/test_compose.py (no tests here).

What it does, in order, and undoes afterwards, also when a test fails:

- the stand-in base images (`python:3.11-slim`, `eclipse-mosquitto:2`, as no image registry
  is reachable here): root file systems built from Debian packages by
  deploy/standin/standin-rootfs.sh, cached as tarballs in CACHE/standin, imported by
  deploy/standin/import.sh into the daemon's data root, which is in CACHE too: a second run
  finds both images and neither builds nor imports anything;
- a `dockerd` on a socket of its own (RUN), whatever else runs on the machine, its log in
  CACHE/dockerd.log;
- at the end: that daemon stopped by its PID, then the `docker0` bridge and the iptables
  rules and chains it added removed (only those: the rules found before it started stay),
  and `net.ipv4.ip_forward` set back.

The images a test builds (iotpipe's) are for the test to remove; the two base images stay
in CACHE as cache (docs/deploy.md says so), and `rm -r /var/cache/iotpipe/compose` drops it.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "deploy" / "standin"
CACHE = Path(os.environ.get("IOTPIPE_COMPOSE_CACHE", "/var/cache/iotpipe/compose"))
RUN = Path("/run/iotpipe-compose")
BASE_IMAGES = ("python:3.11-slim", "eclipse-mosquitto:2")
ROOTFS = ("python-rootfs.tar", "mosquitto-rootfs.tar")
TABLES = ("filter", "nat")
INSTALLED_BY = "./dev.sh test installs docker.io, mmdebstrap, iptables and docker compose v2"


class EngineUnavailable(Exception):
    """No container engine can run on this machine; the message says why."""


def engine_problem() -> str | None:
    """Why this machine cannot run the tier's own Docker Engine, or None."""
    if os.geteuid() != 0:
        return "the compose tier starts its own dockerd, which needs root"
    for tool in ("dockerd", "docker", "mmdebstrap", "iptables", "ip"):
        if not shutil.which(tool):
            return f"no `{tool}` on PATH ({INSTALLED_BY})"
    done = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0 or not done.stdout.strip().lstrip("v").startswith("2."):
        return f"`docker compose` is not Compose v2 ({INSTALLED_BY})"
    return None


def _rules(table: str) -> list[str]:
    done = subprocess.run(
        ["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def _iptables(table: str, spec: Sequence[str]) -> None:
    subprocess.run(["iptables", "-w", "-t", table, *spec], capture_output=True, check=False)


@dataclass
class Machine:
    """What the daemon changes on the host, as found before it started."""

    rules: dict[str, list[str]] = field(default_factory=dict)
    had_docker0: bool = False
    ip_forward: str = ""

    @classmethod
    def now(cls) -> Machine:
        return cls(
            rules={t: _rules(t) for t in TABLES},
            had_docker0=Path("/sys/class/net/docker0").exists(),
            ip_forward=Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        )

    def restore(self) -> None:
        """Take away the rules, chains and interfaces that were not there before."""
        for table in TABLES:
            now = _rules(table)
            added = [r for r in now if r not in self.rules[table]]
            for rule in added:  # rules first (they jump to the chains), then the chains
                if rule.startswith("-A "):
                    _iptables(table, ["-D", *shlex.split(rule)[1:]])
            for rule in added:
                if rule.startswith("-N "):
                    _iptables(table, ["-F", rule.split()[1]])
                    _iptables(table, ["-X", rule.split()[1]])
            for rule in self.rules[table]:  # dockerd sets FORWARD's policy to DROP
                if rule.startswith("-P "):
                    _iptables(table, shlex.split(rule))
        if not self.had_docker0 and Path("/sys/class/net/docker0").exists():
            subprocess.run(["ip", "link", "del", "docker0"], check=False)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward + "\n")


@dataclass
class Engine:
    """A running dockerd of the test's own; `env` points docker and compose at it."""

    pid: int
    log: Path
    env: dict[str, str]

    def docker(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(pid: int, timeout: float = 60) -> None:
    """SIGTERM (dockerd stops its containers and its containerd), SIGKILL if it hangs."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _stop_leftover() -> None:
    """A daemon of an earlier run that was killed before its teardown: ours by its data root."""
    pidfile = RUN / "docker.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text())
        if str(CACHE / "docker").encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            _stop(pid)


@contextlib.contextmanager
def running_engine() -> Iterator[Engine]:
    """Start dockerd, yield it, and leave the machine as it was found (containers are the
    caller's to remove first; the daemon's own are stopped with it anyway)."""
    _stop_leftover()
    RUN.mkdir(parents=True, exist_ok=True)
    (CACHE / "docker").mkdir(parents=True, exist_ok=True)
    before = Machine.now()
    log = CACHE / "dockerd.log"  # the last run's, kept beside the cache for a look afterwards
    sock = RUN / "docker.sock"
    argv = ["dockerd", "--data-root", str(CACHE / "docker"), "--exec-root", str(RUN / "exec")]
    argv += ["--pidfile", str(RUN / "docker.pid"), "-H", f"unix://{sock}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    env.pop("DOCKER_CONTEXT", None)
    engine = Engine(proc.pid, log, env)
    try:
        deadline = time.monotonic() + 120
        while engine.docker("info", check=False, timeout=60).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-800:]
                raise EngineUnavailable(f"dockerd did not start: {tail}")
            time.sleep(0.5)
        yield engine
    finally:
        _stop(proc.pid)
        proc.wait(timeout=10)
        before.restore()
        shutil.rmtree(RUN, ignore_errors=True)  # its socket, pidfile and state


def _script(argv: list[str], env: Mapping[str, str], timeout: float) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{shlex.join(argv)} failed: {(done.stdout + done.stderr)[-3000:]}")


def ensure_base_images(engine: Engine) -> None:
    """The stand-in base images: from the data root, else from the cached tarballs, else
    built (about 2 minutes with Debian's packages at hand, 5 from nothing)."""
    if all(engine.has_image(name) for name in BASE_IMAGES):
        return
    tars = CACHE / "standin"
    if not all((tars / name).is_file() for name in ROOTFS):
        # Built in a scratch folder and moved in whole: a run stopped half-way caches nothing.
        tars.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tars.parent) as scratch:
            _script([str(STANDIN / "standin-rootfs.sh"), scratch], os.environ, 1800)
            shutil.rmtree(tars, ignore_errors=True)
            Path(scratch).rename(tars)
            Path(scratch).mkdir()  # for TemporaryDirectory's own clean-up
    _script([str(STANDIN / "import.sh"), str(tars)], {**engine.env, "ENGINE": "docker"}, 600)


class SerialBoard:
    """The virtual board (real firmware behind a pty) on the host, plugged in as a USB serial
    adapter appears: the node root:dialout 0660 and a link in /dev/serial/by-id, as udev
    makes them — so the containerised bridge reaches it through the host's /dev exactly as a
    real board. Unplugged: the process stops, the pty and the link go."""

    def __init__(self, device_id: str, log: Path) -> None:
        self.device_id = device_id
        self.log = log
        self.link = Path("/dev/serial/by-id") / f"usb-iotpipe_test_{os.getpid()}-if00-port0"
        self.made_dirs = [d for d in (self.link.parent.parent, self.link.parent) if not d.exists()]
        self.proc: subprocess.Popen[bytes] | None = None

    def plug(self, timeout: float = 60) -> None:
        for folder in self.made_dirs:
            folder.mkdir(exist_ok=True)
        argv = [sys.executable, "-m", "iotpipe", "board", "virtual", "--link", str(self.link)]
        argv += ["--device-id", self.device_id, "--rate", "2"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.link.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no virtual board at {self.link}: {self.log.read_text()}")
            time.sleep(0.1)
        node = self.link.resolve()
        os.chown(node, 0, grp.getgrnam("dialout").gr_gid)
        node.chmod(0o660)

    def unplug(self) -> None:
        if self.proc is not None:
            _stop(self.proc.pid, timeout=30)
            self.proc.wait(timeout=10)
            self.proc = None
        self.link.unlink(missing_ok=True)

    def close(self) -> None:
        self.unplug()
        for folder in reversed(self.made_dirs):
            with contextlib.suppress(OSError):
                folder.rmdir()
