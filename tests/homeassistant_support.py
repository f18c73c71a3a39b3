"""A real Home Assistant for tests/test_homeassistant.py: installed once into its own
virtualenv under /var/cache/iotpipe/homeassistant, started with its MQTT integration
already set up, and asked through its REST API.

Home Assistant 2025.4.4 is the newest release whose requirements allow the Python 3.13.0
that pyenv has on these machines. The install (about 600 MB) happens under a lock, so two
test runs at once install it once; a marker file written last says it is complete.
What the frontend and MQTT integrations would pip-install at their first start
(home-assistant-frontend, paho-mqtt) goes into the same virtualenv at install time, and
Home Assistant is started with ``--skip-pip``: after the install it never asks a package
registry for anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

VERSION = "2025.4.4"
# The integrations a start needs beyond Home Assistant's own requirements: their
# requirements are what Home Assistant would otherwise pip-install at its first start.
INTEGRATIONS = ("frontend", "mqtt")
PYTHON_VERSION = "3.13.0"
CACHE = Path(os.environ.get("IOTPIPE_HA_CACHE", "/var/cache/iotpipe/homeassistant"))
INSTALL_TIMEOUT_S = 1800.0


class Unavailable(Exception):
    """Home Assistant cannot be had on this machine; the message says how to get it."""


def pyenv_python() -> Path:
    roots = []
    if shutil.which("pyenv"):
        done = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30)
        roots.append(Path(done.stdout.strip()))
    roots += [Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser(), Path("/root/.pyenv")]
    for root in roots:
        python = root / "versions" / PYTHON_VERSION / "bin" / "python"
        if python.is_file():
            return python
    raise Unavailable(
        f"the Home Assistant tier needs Python {PYTHON_VERSION} from pyenv (none under "
        f"{', '.join(str(r) for r in roots)}) — `pyenv install {PYTHON_VERSION}`"
    )


def venv_dir() -> Path:
    return CACHE / f"venv-{VERSION}"


def installed() -> Path:
    """The ``hass`` of the cached virtualenv, installed now if it is not there yet."""
    venv = venv_dir()
    hass = venv / "bin" / "hass"
    marker = venv / ".iotpipe-installed"
    if marker.is_file() and marker.read_text() == _wanted():
        return hass
    python = pyenv_python()
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be installing it right now
        if marker.is_file() and marker.read_text() == _wanted():
            return hass
        log = CACHE / "install.log"
        with log.open("w") as out:
            if not (venv / ".iotpipe-core").is_file():
                if venv.exists():
                    shutil.rmtree(venv)  # a half-done install from a run that was stopped
                _run([str(python), "-m", "venv", str(venv)], out, log)
                _run([*_pip(venv), f"homeassistant=={VERSION}"], out, log)
                (venv / ".iotpipe-core").write_text(f"{VERSION}\n")
            # What the integrations this configuration loads would pip-install at their
            # first start, pinned by the release's own manifests: installed now, so that
            # Home Assistant runs with --skip-pip and never needs a registry.
            _run([*_pip(venv), *requirements(venv)], out, log)
        marker.write_text(_wanted())
    return hass


def _wanted() -> str:
    return f"{VERSION} {' '.join(INTEGRATIONS)}\n"


def _pip(venv: Path) -> list[str]:
    return [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]


def requirements(venv: Path) -> list[str]:
    found = []
    for domain in INTEGRATIONS:
        manifests = venv.glob(
            f"lib/python*/site-packages/homeassistant/components/{domain}/manifest.json"
        )
        for manifest in manifests:
            found += json.loads(manifest.read_text()).get("requirements", [])
    if not found:
        raise Unavailable(f"no integration manifests found in {venv} — delete it to reinstall")
    return found


def _run(argv: list[str], out: IO[bytes], log: Path) -> None:
    done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S)
    if done.returncode != 0:
        out.flush()
        raise Unavailable(
            f"installing Home Assistant {VERSION} failed ({' '.join(argv[:4])} exit "
            f"{done.returncode}; log {log}):\n{log.read_text(errors='replace')[-2000:]}"
        )


def write_config(config: Path, http_port: int, mqtt_port: int, user: str, password: str) -> None:
    """A configuration that starts with the MQTT integration set up, as if a person had
    added it in the UI: the config entry is stored where the UI would store it."""
    (config / ".storage").mkdir(parents=True, exist_ok=True)
    (config / "configuration.yaml").write_text(
        "homeassistant:\n"
        "  name: iotpipe test\n  unit_system: metric\n  time_zone: UTC\n"
        "  latitude: 52.37\n  longitude: 4.89\n  elevation: 0\n"
        "  currency: EUR\n  country: NL\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {http_port}\n"
        "api:\n"
        "logger:\n  default: info\n"
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    entry = {
        "domain": "mqtt",
        "version": 1,
        "minor_version": 2,
        "source": "user",
        "title": "iotpipe broker",
        "entry_id": uuid.uuid4().hex,
        "created_at": now,
        "modified_at": now,
        "data": {"broker": "127.0.0.1", "port": mqtt_port, "username": user, "password": password},
        "options": {"discovery": True, "discovery_prefix": "homeassistant"},
        "discovery_keys": {},
        "disabled_by": None,
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "subentries": [],
        "unique_id": None,
    }
    entries = {
        "version": 1,
        "minor_version": 5,
        "key": "core.config_entries",
        "data": {"entries": [entry]},
    }
    path = config / ".storage" / "core.config_entries"
    path.write_text(json.dumps(entries))
    path.chmod(0o600)  # it holds the broker password, as Home Assistant's own would


# Run by Home Assistant's Python: its websocket API, authenticated, asked one question.
REGISTRY_GET = """
import asyncio, json, sys
import aiohttp

async def main():
    url, entity_id = sys.argv[1], sys.argv[2]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, timeout=30) as ws:
            await ws.receive_json(timeout=30)  # auth_required
            await ws.send_json({"type": "auth", "access_token": sys.stdin.read()})
            authed = await ws.receive_json(timeout=30)
            if authed.get("type") != "auth_ok":
                raise SystemExit("not authenticated: " + json.dumps(authed))
            await ws.send_json({"id": 1, "type": "config/entity_registry/get",
                                "entity_id": entity_id})
            print(json.dumps(await ws.receive_json(timeout=30)))

asyncio.run(main())
"""


@dataclass
class Api:
    """Home Assistant's REST API on loopback, with a token made through onboarding."""

    port: int
    token: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, body, headers or {}, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                text = answer.read().decode()
                return answer.status, json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def answers(self) -> bool:
        try:
            return self._call("GET", "/api/")[0] in (200, 401)
        except OSError:
            return False

    def log_in(self) -> None:
        """Onboarding's first user gives an auth code; the code gives an access token."""
        client = f"{self.base}/"
        user = {
            "client_id": client,
            "name": "Test",
            "username": "test",
            "password": uuid.uuid4().hex,
            "language": "en",
        }
        status, body = self._call(
            "POST",
            "/api/onboarding/users",
            json.dumps(user).encode(),
            {"Content-Type": "application/json"},
        )
        if status != 200:
            raise AssertionError(f"onboarding answered {status}: {body}")
        form = urllib.parse.urlencode(
            {"grant_type": "authorization_code", "code": body["auth_code"], "client_id": client}
        )
        status, token = self._call(
            "POST",
            "/auth/token",
            form.encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            raise AssertionError(f"/auth/token answered {status}: {token}")
        self.token = token["access_token"]

    def states(self) -> dict[str, dict[str, Any]]:
        status, body = self._call("GET", "/api/states")
        if status != 200:
            raise AssertionError(f"/api/states answered {status}: {body}")
        return {state["entity_id"]: state for state in body}

    def press(self, entity_id: str) -> None:
        body = json.dumps({"entity_id": entity_id}).encode()
        status, answer = self._call(
            "POST", "/api/services/button/press", body, {"Content-Type": "application/json"}
        )
        if status != 200:
            raise AssertionError(f"button.press answered {status}: {answer}")

    def registry_entry(self, entity_id: str) -> dict[str, Any]:
        """The entity registry's entry (websocket ``config/entity_registry/get``: the REST
        API has no registry), through aiohttp in Home Assistant's own virtualenv; the
        token goes on stdin, never on a command line."""
        python = installed().parent / "python"
        url = f"ws://127.0.0.1:{self.port}/api/websocket"
        done = subprocess.run(
            [str(python), "-c", REGISTRY_GET, url, entity_id],
            input=self.token,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise AssertionError(f"config/entity_registry/get failed: {done.stderr[-2000:]}")
        answer: dict[str, Any] = json.loads(done.stdout)
        if not answer.get("success"):
            raise AssertionError(f"config/entity_registry/get answered {answer}")
        entry: dict[str, Any] = answer["result"]
        return entry

    def template(self, text: str) -> str:
        body = json.dumps({"template": text}).encode()
        request = urllib.request.Request(
            self.base + "/api/template",
            body,
            {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return str(answer.read().decode())


if __name__ == "__main__":  # install ahead of a test run: python tests/homeassistant_support.py
    started = time.monotonic()
    print(installed(), f"{time.monotonic() - started:.0f} s")
