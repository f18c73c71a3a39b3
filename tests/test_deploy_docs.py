"""The README and docs/deploy.md as written: their commands are real, their links resolve,
and the container health check asks the right part the right question."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from iotpipe.cli import build_parser
from iotpipe.healthcheck import check, command_line
from tests.conftest import ROOT
from tests.test_deploy import handouts, init_data, init_script, iotpipe_commands, named_mounts

DOCS = [ROOT / "README.md", ROOT / "docs" / "deploy.md"]
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)


pytestmark = pytest.mark.usefixtures("isolated_settings")


def shell_lines(doc: Path) -> list[str]:
    lines = []
    for block in FENCE.findall(doc.read_text()):
        joined = block.replace("\\\n", " ")
        lines += [line.strip() for line in joined.splitlines() if line.strip()]
    return lines


def iotpipe_lines(doc: Path) -> list[list[str]]:
    found = []
    for line in shell_lines(doc):
        if Path(line.split()[0]).name == "iotpipe":
            found.append(shlex.split(line, comments=True)[1:])
    return found


def test_the_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0] == "# iotpipe" and lines[1] == "" and lines[2].endswith(".")
    block = lines[lines.index("```") + 1 : lines.index("```", lines.index("```") + 1)]
    assert [line.split("#")[0].strip() for line in block] == ["./dev.sh up", "./dev.sh test"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_iotpipe_command_in_the_docs_is_valid(doc: Path) -> None:
    commands = iotpipe_lines(doc)
    assert commands
    for argv in commands:
        try:
            build_parser(argv).parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"{doc.name}: `iotpipe {shlex.join(argv)}` is not valid") from exc


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_compose_profile_and_unit_the_docs_name_exists(doc: Path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    profiles = {p for s in compose["services"].values() for p in s.get("profiles", [])}
    text = doc.read_text()
    for profile in re.findall(r"--profile (\S+)", text):
        assert profile in profiles
    for unit in re.findall(r"deploy/systemd/([\w@.-]+\.service)", text):
        assert (ROOT / "deploy" / "systemd" / unit).is_file(), unit


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_relative_link_and_image_resolves(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
        if "://" not in target:
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
    if doc.name == "README.md":
        assert "](docs/img/dashboard.png)" in doc.read_text()


def test_the_compose_logins_are_where_deploy_md_says(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in re.findall(r"docker compose (?:exec|logs)(?: -\w+)* ([\w-]+)", text):
        assert name in services, f"deploy.md names service {name}"
    # Every file the docs point at in the broker's volume is one that init's setup writes.
    (argv,) = iotpipe_commands(services["init"])
    setup = [str(tmp_path) if a == init_data() else a for a in argv]
    made = subprocess.run(
        [sys.executable, "-m", "iotpipe", *setup], capture_output=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    # ... or that the docs' login of a Wi-Fi board (init's one-shot, run again) writes.
    (wifi,) = re.findall(r"docker compose run --rm init '(iotpipe board login [^&']+)", text)
    login = [str(tmp_path) if a == init_data() else a for a in shlex.split(wifi)[1:]]
    made = subprocess.run(
        [sys.executable, "-m", "iotpipe", *login], capture_output=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    broker_data = named_mounts(services["broker"])["broker-data"]
    assert broker_data == init_data()
    named = re.findall(rf"{re.escape(broker_data)}/([\w./*-]+\w)", text)
    assert "credentials/reader.json" in named
    for relative in named:
        assert list(tmp_path.glob(relative)), f"deploy.md names {broker_data}/{relative}"
    # The hand-out table, row by row, is init's script.
    table = set(re.findall(r"^ *\| `([\w-]+)` \| `(credentials/\w+\.json)` \|", text, re.M))
    at_init = {at: volume for volume, at in named_mounts(services["init"]).items()}
    done = set()
    for _source, destination, _owner, _mode in handouts(init_script()):
        mount = next(at for at in at_init if destination.startswith(at + "/"))
        done.add((at_init[mount], destination.removeprefix(mount + "/")))
    assert table == done


def test_dev_sh_parses_and_says_how_to_use_it() -> None:
    assert subprocess.run(["bash", "-n", str(ROOT / "dev.sh")], timeout=30).returncode == 0
    done = subprocess.run([str(ROOT / "dev.sh")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "usage: ./dev.sh up" in done.stderr and "./dev.sh test" in done.stderr


def test_the_health_check_finds_the_iotpipe_command_of_the_main_process() -> None:
    script = b"/usr/local/bin/python3\0/usr/local/bin/iotpipe\0dashboard\0--http\0:80\0"
    assert command_line(script) == ["dashboard", "--http", ":80"]
    assert command_line(b"python\0-m\0iotpipe\0bridge\0") == ["bridge"]
    assert command_line(b"mosquitto\0-c\0x\0") == []


class _Fake(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.answers.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[tuple[int, dict[str, bytes]]]:
    answers: ClassVar[dict[str, bytes]] = {}
    handler = type("Handler", (_Fake,), {"answers": answers})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], answers
    server.shutdown()
    server.server_close()


def test_the_health_check_asks_the_dashboard_and_the_bridge(
    fake_server: tuple[int, dict[str, bytes]],
) -> None:
    port, answers = fake_server
    dashboard = ["dashboard", "--http", f"0.0.0.0:{port}"]
    assert check(dashboard) is not None  # no /healthz yet: a 404
    answers["/healthz"] = json.dumps(
        {"ok": True, "mqtt_connected": True, "subscribed": False}
    ).encode()
    assert "not subscribed" in (check(dashboard) or ""), "healthy means: readings are kept"
    answers["/healthz"] = json.dumps(
        {"ok": True, "mqtt_connected": True, "subscribed": True}
    ).encode()
    assert check(dashboard) is None
    bridge = ["bridge", "--serial", "x", "--metrics", f"127.0.0.1:{port}"]
    answers["/metrics"] = b"iotpipe_bridge_mqtt_connected 0\n"
    assert "the bridge is not publishing" in (check(bridge) or "")
    answers["/metrics"] = b"iotpipe_bridge_mqtt_connected 1\n"
    assert check(bridge) is None
    assert check(["bridge", "--serial", "x"]) is None  # no endpoint: alive is healthy
