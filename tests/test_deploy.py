"""The ways users deploy iotpipe, checked without a container engine: every command in
docker-compose.yml, the systemd units and the docs is a real `iotpipe` command line, every
mounted path exists, the Dockerfile installs the package as the docs say. Where docker
compose and an engine are present, the compose file is also brought up."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from iotpipe.cli import build_parser
from iotpipe.settings import SETTINGS
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
UNITS = ROOT / "deploy" / "systemd"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


pytestmark = pytest.mark.usefixtures("isolated_settings")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def interpolate(text: str) -> str:
    """Compose's ${VAR:-default} with nothing set in .env: the defaults."""
    return VARIABLE.sub(lambda m: m[2] or "", text)


def assert_valid_iotpipe(argv: list[str], where: str) -> argparse.Namespace:
    try:
        return build_parser(argv).parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"{where}: `iotpipe {shlex.join(argv)}` is not valid") from exc


def iotpipe_commands(service: dict[str, Any]) -> list[list[str]]:
    """The iotpipe command lines a service runs: its command, or those in a `sh -c` script."""
    command = [interpolate(str(part)) for part in service.get("command", [])]
    if service.get("entrypoint") != ["sh", "-c"]:
        return [command]
    found = []
    for step in re.split(r"&&|[;&\n]", " ".join(command)):
        words = shlex.split(step)
        words = words[1:] if words[:1] == ["exec"] else words
        if words[:1] == ["iotpipe"]:
            found.append(words[1:])
    return found


def iotpipe_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return {name: s for name, s in services.items() if s.get("image", "").startswith("iotpipe")}


def test_compose_has_the_services_and_the_virtual_board_profile() -> None:
    services = compose()["services"]
    assert {"broker", "bridge", "dashboard", "virtual-board"} <= set(services)
    assert services["broker"]["image"] == "eclipse-mosquitto:2"
    assert services["virtual-board"]["profiles"] == ["virtual-board"]
    assert "profiles" not in services["bridge"] and "profiles" not in services["dashboard"]


@pytest.mark.parametrize("name", sorted(iotpipe_services()))
def test_every_compose_command_is_a_valid_iotpipe_command(name: str) -> None:
    commands = iotpipe_commands(iotpipe_services()[name])
    assert commands, f"{name} runs no iotpipe command"
    for argv in commands:
        args = assert_valid_iotpipe(argv, f"docker-compose.yml service {name}")
        if hasattr(args, "broker"):
            assert args.broker.host == "broker", f"{name} must use the broker service"
        if hasattr(args, "data"):
            assert args.data == Path("/data"), f"{name} must keep its state in the /data volume"


def test_the_dashboard_is_reachable_from_outside_its_container_on_its_published_port() -> None:
    dashboard = compose()["services"]["dashboard"]
    args = assert_valid_iotpipe(iotpipe_commands(dashboard)[0], "dashboard")
    assert args.http.host == "0.0.0.0"
    published = [interpolate(p) for p in dashboard["ports"]]
    assert published == [f"127.0.0.1:8080:{args.http.port}"]  # loopback unless .env says


def test_every_mounted_path_exists_and_every_volume_is_declared() -> None:
    doc = compose()
    for name, service in doc["services"].items():
        for mount in service.get("volumes", []):
            source = interpolate(mount).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"
            elif source.startswith("/"):
                assert source == "/dev", f"{name} binds {source} from the host"
            else:
                assert source in doc["volumes"], f"{name} uses undeclared volume {source}"


def test_the_broker_runs_the_repo_config_that_includes_conf_d() -> None:
    broker = compose()["services"]["broker"]
    assert broker["command"][-1] == "/mosquitto/config/docker.conf"
    assert "./broker:/mosquitto/config:ro" in broker["volumes"]
    main = (ROOT / "broker" / "docker.conf").read_text()
    assert "include_dir /mosquitto/config/conf.d" in main
    assert (ROOT / "broker" / "conf.d" / "iotpipe.conf").is_file()


def test_the_bridge_survives_replugging_the_board() -> None:
    bridge = compose()["services"]["bridge"]
    assert "devices" not in bridge, "a devices: entry does not survive re-enumeration"
    assert "/dev:/dev" in bridge["volumes"]
    assert set(bridge["device_cgroup_rules"]) == {"c 188:* rmw", "c 166:* rmw"}
    assert bridge["group_add"], "the container user needs the host's dialout group"
    assert "re-enumeration" in COMPOSE.read_text()  # the why, next to the how


def test_every_variable_the_compose_file_reads_is_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text()
    for name, _default in VARIABLE.findall(COMPOSE.read_text()):
        assert f"{name}=" in example, f"{name} is used by docker-compose.yml, not in .env.example"


def test_env_example_documents_every_setting_commented_out() -> None:
    example = (ROOT / ".env.example").read_text()
    missing = [s.env for s in SETTINGS.values() if f"# {s.env}=" not in example]
    assert not missing, f"add to .env.example: {missing}"
    active = [line for line in example.splitlines() if line and not line.startswith("#")]
    assert not active, f"copying .env.example must change nothing: {active}"


def _stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.M)[1:]


def test_the_dockerfile_builds_the_package_as_deploy_md_installs_it() -> None:
    text = DOCKERFILE.read_text()
    build, runtime = _stages(text)
    spec = re.search(r'pip wheel .* "(\.\[[a-z,]+\])"', build)
    assert spec, "the build stage makes wheels of the repo"
    assert f"pip install '{spec[1]}'" in DEPLOY_DOC.read_text()
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for folder in set(package_dirs["package-dir"].values()):
        assert f"COPY {folder} {folder}" in build, f"the image would lack {folder}/"
    assert "pip install --no-cache-dir --no-index /wheels/*.whl" in runtime


def test_the_image_is_slim_unprivileged_and_checks_its_health() -> None:
    _build, runtime = _stages(DOCKERFILE.read_text())
    assert runtime.startswith("python:") and "-slim" in runtime.splitlines()[0]
    assert not re.search(r"apt-get|gcc|build-essential", runtime), "no build tools at run time"
    user = re.findall(r"^USER (\S+)", runtime, flags=re.M)
    assert user and user[-1] not in ("root", "0")
    health = re.search(r"HEALTHCHECK .*\n?.*CMD \[(.*)\]", runtime)
    assert health and '"iotpipe.healthcheck"' in health[1]
    assert (ROOT / "iotpipe" / "healthcheck.py").is_file()
    assert 'ENTRYPOINT ["iotpipe"]' in runtime


def _unit(path: Path) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


@pytest.mark.parametrize("unit", sorted(p.name for p in UNITS.glob("*.service")))
def test_every_systemd_unit_runs_a_valid_iotpipe_command(unit: str) -> None:
    keys = _unit(UNITS / unit)
    (exec_start,) = keys["ExecStart"]
    binary, *argv = shlex.split(exec_start)
    assert binary == "/usr/local/bin/iotpipe"  # where docs/deploy.md links the venv's iotpipe
    assert_valid_iotpipe(argv + (["--serial", "x"] if argv == ["bridge"] else []), unit)
    assert keys["User"] == ["iotpipe"]
    assert f"deploy/systemd/{unit}" in DEPLOY_DOC.read_text(), f"docs/deploy.md installs {unit}"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    venv_iotpipe = shutil.which("iotpipe") or str(Path(sys.executable).parent / "iotpipe")
    names = []
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/usr/local/bin/iotpipe", venv_iotpipe)
        (tmp_path / unit.name).write_text(text)
        names.append(str(tmp_path / unit.name.replace("@.", "@kitchen.")))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def _engine_problem() -> str | None:
    if not shutil.which("docker"):
        return "no docker client"
    checks = (["docker", "compose", "version"], ["docker", "info"])
    for argv in checks:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            return f"`{shlex.join(argv)}` fails: {(done.stderr or done.stdout).strip()[:200]}"
    return None


def test_compose_brings_up_a_working_pipeline() -> None:
    problem = _engine_problem()
    if problem:
        pytest.skip(f"no container engine to bring the compose file up ({problem})")
    project = ["docker", "compose", "-p", "iotpipe-test", "--profile", "virtual-board"]
    try:
        # Not the serial bridge: with no board plugged in it is (rightly) not healthy.
        services = ["broker", "dashboard", "virtual-board"]
        subprocess.run(
            [*project, "up", "-d", "--build", "--wait", *services], check=True, timeout=900
        )
        done = subprocess.run(
            [*project, "exec", "-T", "dashboard", "python", "-m", "iotpipe.healthcheck"],
            timeout=60,
        )
        assert done.returncode == 0
    finally:
        subprocess.run([*project, "down", "-v"], timeout=300)
