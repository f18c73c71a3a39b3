"""The ways users deploy iotpipe, checked without a container engine: every command in
docker-compose.yml, the systemd units and the docs is a real `iotpipe` command line, every
mounted path exists, the Dockerfile installs the package as the docs say. On a real Docker
Engine the compose file is brought up by tests/test_compose.py (the `compose` tier)."""

from __future__ import annotations

import argparse
import json
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

from iotpipe.broker import tls
from iotpipe.broker.auth import ROLES
from iotpipe.broker.mosquitto import SUB_OPTIONS
from iotpipe.cli import build_parser
from iotpipe.mqttlogin import fill_credentials
from iotpipe.settings import SETTINGS
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
UNITS = ROOT / "deploy" / "systemd"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
# Compose's interpolation: `$$` is a literal `$`, else ${VAR}, ${VAR:-default}, $VAR.
VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)")


pytestmark = pytest.mark.usefixtures("isolated_settings")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def interpolate(text: str) -> str:
    """What compose makes of a value with nothing set in .env: each variable its default
    (or nothing), each `$$` one `$`."""
    return VARIABLE.sub(lambda m: "$" if m[0] == "$$" else m[2] or "", text)


def variables(value: object) -> set[str]:
    """The variables a parsed compose value reads (comments are not interpolated)."""
    if isinstance(value, dict):
        return set().union(*(variables(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(variables(v) for v in value))
    found = VARIABLE.finditer(str(value)) if isinstance(value, str) else ()
    return {m[1] or m[3] for m in found if m[0] != "$$"}


def named_mounts(service: dict[str, Any]) -> dict[str, str]:
    """{named volume: where this service's container mounts it}."""
    mounts = (interpolate(m).split(":") for m in service.get("volumes", []))
    return {m[0]: m[1] for m in mounts if not m[0].startswith((".", "/"))}


def init_script() -> str:
    init = compose()["services"]["init"]
    assert init["entrypoint"] == ["sh", "-c"]
    return interpolate(init["command"][0])


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
    assert {"broker", "bridge", "dashboard", "virtual-board", "announcer"} <= set(services)
    assert services["broker"]["image"] == "eclipse-mosquitto:2"
    assert services["virtual-board"]["profiles"] == ["virtual-board"]
    # Never healthy without a board: a start without hardware must not include it.
    assert services["bridge"]["profiles"] == ["serial"]
    assert "profiles" not in services["dashboard"] and "profiles" not in services["broker"]
    # Boards on Wi-Fi need no profile, so neither does what announces them.
    assert "profiles" not in services["announcer"]


def test_one_service_builds_the_image_and_the_others_run_it_by_name() -> None:
    services = compose()["services"]
    assert [name for name, s in services.items() if "build" in s] == ["init"]
    for name, service in iotpipe_services().items():
        assert service["image"] == "iotpipe:latest", name
        if name != "init":
            assert service["pull_policy"] == "never", f"{name}: no registry has iotpipe's image"


def test_the_one_shot_init_has_no_health_check() -> None:
    init = compose()["services"]["init"]
    assert init["healthcheck"] == {"disable": True}


@pytest.mark.parametrize("name", sorted(iotpipe_services()))
def test_every_compose_command_is_a_valid_iotpipe_command(name: str) -> None:
    commands = iotpipe_commands(iotpipe_services()[name])
    assert commands, f"{name} runs no iotpipe command"
    for argv in commands:
        args = assert_valid_iotpipe(argv, f"docker-compose.yml service {name}")
        # A virtual board on its serial transport never talks to the broker.
        if hasattr(args, "broker") and getattr(args, "transport", "mqtt") == "mqtt":
            assert args.broker.host == "broker", f"{name} must use the broker service"
        if hasattr(args, "data"):
            mounts = named_mounts(iotpipe_services()[name]).values()
            assert str(args.data) in mounts, f"{name} must keep its state in a volume"


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
    config = [v for v in broker["volumes"] if ":/mosquitto/config" in v]
    assert config == [  # Mosquitto's own files, not broker/'s Python
        "./iotpipe/broker/docker.conf:/mosquitto/config/docker.conf:ro",
        "./iotpipe/broker/conf.d:/mosquitto/config/conf.d:ro",
    ]
    # The image's user from the start: its entrypoint's `chown -R /mosquitto` (root only)
    # would log a read-only error for each mounted file.
    assert broker["user"] == "1883:1883"
    main = (ROOT / "iotpipe" / "broker" / "docker.conf").read_text()
    assert "include_dir /mosquitto/config/conf.d" in main
    assert (ROOT / "iotpipe" / "broker" / "conf.d" / "iotpipe.conf").is_file()


def _conf_value(key: str) -> str:
    text = (ROOT / "iotpipe" / "broker" / "docker.conf").read_text()
    values = re.findall(rf"^{key} (.+)$", text, flags=re.M)
    assert len(values) == 1, f"iotpipe/broker/docker.conf sets {key} {len(values)} times"
    return str(values[0])


def init_data() -> str:
    """Where init's `iotpipe broker --setup-only` writes, as a path in init's container."""
    (argv,) = iotpipe_commands(compose()["services"]["init"])
    args = assert_valid_iotpipe(argv, "init")
    assert args.setup_only and not args.insecure, "init prepares a locked-down broker"
    return str(args.data)


def test_the_compose_broker_refuses_anonymous_clients_and_reads_what_init_writes() -> None:
    assert _conf_value("allow_anonymous") == "false"
    services = compose()["services"]
    volume = next(v for v, at in named_mounts(services["init"]).items() if at == init_data())
    broker_data = named_mounts(services["broker"])[volume]
    assert volume == "broker-data" and broker_data == init_data(), "one path in both"
    # auth.ensure's file names, in the directory init prepares.
    assert _conf_value("password_file") == f"{broker_data}/passwd"
    assert _conf_value("acl_file") == f"{broker_data}/acl"
    script = init_script()
    assert f"chown -R 1883:1883 {init_data()}\n" in script, "Mosquitto runs as uid 1883"


def test_the_compose_brokers_mqtts_listener_serves_the_certificate_init_makes() -> None:
    (argv,) = iotpipe_commands(compose()["services"]["init"])
    port = assert_valid_iotpipe(argv, "init").tls_port
    text = (ROOT / "iotpipe" / "broker" / "docker.conf").read_text()
    assert re.findall(r"^listener (\d+)$", text, flags=re.M) == ["1883", str(port)]
    assert text.index(f"listener {port}\n") < text.index("cafile "), "options follow it"
    folder = tls.tls_dir(Path(init_data()))
    for key, name in (("cafile", "ca.crt"), ("certfile", "server.crt"), ("keyfile", "server.key")):
        assert _conf_value(key) == f"{folder}/{name}", key
    published = [interpolate(p) for p in compose()["services"]["broker"]["ports"]]
    assert f"127.0.0.1:{port}:{port}" in published, "loopback unless .env says"


def test_init_runs_once_as_root_before_every_other_service() -> None:
    services = compose()["services"]
    init = services["init"]
    assert init["user"] == "0" and init["restart"] == "no" and "profiles" not in init
    for name, service in services.items():
        if name == "init":
            continue
        needs = service.get("depends_on", {})
        assert needs.get("init") == {"condition": "service_completed_successfully"}, name
        if name != "broker":
            assert needs["broker"] == {"condition": "service_healthy"}, name
        if name in ("bridge", "virtual-board"):  # first start: publish once someone listens
            assert needs["dashboard"] == {"condition": "service_healthy"}, name


def test_the_announcer_runs_what_systemd_runs_as_the_brokers_user_reading_its_volume() -> None:
    """The Wi-Fi boards are the ones with a login in the broker's data, so the announcer
    reads that volume, as systemd's unit reads /var/lib/iotpipe/broker as the broker's user;
    read-only, and with nothing else: no handed-out file, no capability, no writable root."""
    services = compose()["services"]
    announcer = services["announcer"]
    (argv,) = iotpipe_commands(announcer)
    args = assert_valid_iotpipe(argv, "announcer")
    exec_start = _unit(UNITS / "iotpipe-announce.service")["ExecStart"][0]
    unit = assert_valid_iotpipe(shlex.split(exec_start)[1:], "iotpipe-announce.service")
    assert args.command_module == unit.command_module
    assert str(args.data) == init_data(), "the broker's own data, where the logins are"
    assert announcer["volumes"] == ["broker-data:" + init_data() + ":ro"]
    assert announcer["user"] == services["broker"]["user"], "the owner of the broker's files"
    assert announcer["read_only"] is True and announcer["cap_drop"] == ["ALL"]
    assert announcer["security_opt"] == ["no-new-privileges:true"]
    assert announcer["restart"] == "unless-stopped"
    assert args.mqtt_credentials is None and not args.mqtt_user, "no login on its command line"


def handouts(script: str) -> list[tuple[str, str, str, str]]:
    """(source, destination, owner, mode) of each file the script installs."""
    found = []
    for line in script.splitlines():
        words = shlex.split(line)
        if words[:1] == ["install"] and "-d" not in words:
            options = dict(zip(words[1:-2:2], words[2:-2:2], strict=True))
            found.append((words[-2], words[-1], f"{options['-o']}:{options['-g']}", options["-m"]))
    return found


def role(args: argparse.Namespace) -> str | None:
    """The MQTT role whose login an iotpipe command needs, if any."""
    part = str(args.command_module).split(".")[-1]  # iotpipe.commands.bridge: bridge
    return part if part in ("bridge", "dashboard") else None


def test_each_service_gets_its_own_roles_login_where_it_looks_for_it(tmp_path: Path) -> None:
    """Init's hand-out replayed into one folder per volume; then each service's own command,
    with its volumes at those folders, must find exactly its role's login there."""
    services = compose()["services"]
    at_init = {at: vol for vol, at in named_mounts(services["init"]).items()}
    image_uid = re.search(r"useradd .*--uid (\d+)", DOCKERFILE.read_text())
    assert image_uid, "the Dockerfile names its user's uid"
    handed: dict[str, set[str]] = {}
    for source, destination, owner, mode in handouts(init_script()):
        given = Path(source).stem
        assert source == f"{init_data()}/credentials/{given}.json"
        assert (owner, mode) == (f"{image_uid[1]}:{image_uid[1]}", "0600"), destination
        mount = next(at for at in at_init if destination.startswith(at + "/"))
        target = tmp_path / at_init[mount] / destination.removeprefix(mount + "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"role": given, "user": f"user-{given}", "password": "x"}))
        handed.setdefault(at_init[mount], set()).add(given)
    for name, service in iotpipe_services().items():
        swaps = {at: str(tmp_path / vol) for vol, at in named_mounts(service).items()}
        commands = [assert_valid_iotpipe([swaps.get(a, a) for a in argv], name)
                    for argv in iotpipe_commands(service)]  # fmt: skip
        wanted = {r for args in commands if (r := role(args))}
        got = set().union(*(handed.get(v, set()) for v in named_mounts(service)))
        assert name == "init" or got == wanted, f"{name} is handed {got}, needs {wanted}"
        for args in commands:
            if (needed := role(args)) and name != "init":
                fill_credentials(args, needed)
                assert args.mqtt_user == f"user-{needed}", f"{name} misses {needed}.json"
    assert "reader" not in set().union(*handed.values()), "the reader's login stays in broker"


def test_the_broker_health_check_logs_in_as_the_reader() -> None:
    broker = compose()["services"]["broker"]
    test = [interpolate(str(p)) for p in broker["healthcheck"]["test"]]
    assert test[:2] == ["CMD", "mosquitto_sub"] and "$SYS/broker/uptime" in test
    assert not {"-u", "-P", "--pw"} & set(test), "no password on a command line"
    config_home = broker["environment"]["XDG_CONFIG_HOME"]
    assert config_home == f"{named_mounts(broker)['broker-data']}/credentials"
    assert SUB_OPTIONS == "mosquitto_sub"  # the file mosquitto_sub reads in XDG_CONFIG_HOME


def test_broker_setup_only_prepares_the_files_without_mosquitto(tmp_path: Path) -> None:
    data = tmp_path / "broker"
    argv = [sys.executable, "-m", "iotpipe", "broker", "--setup-only", "--data", str(data)]
    argv += ["--mosquitto", str(tmp_path / "no-such-mosquitto")]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    folder = data / "credentials"
    assert {p.name for p in folder.iterdir()} == {*(f"{r}.json" for r in ROLES), SUB_OPTIONS}
    made = {p.name for p in data.iterdir()}
    assert {"credentials", "passwd", "acl"} <= made and "mosquitto.conf" not in made
    logins = {r: json.loads((folder / f"{r}.json").read_text()) for r in ROLES}
    reader = logins["reader"]
    options = (folder / SUB_OPTIONS).read_text()
    assert options == f"-u {reader['user']}\n-P {reader['password']}\n"
    assert (folder / SUB_OPTIONS).stat().st_mode & 0o777 == 0o600
    for login in logins.values():  # its log is kept by docker: no password in it
        assert login["password"] not in first.stderr and login["user"] in first.stderr
    again = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "made now: none" in again.stderr
    assert json.loads((folder / "reader.json").read_text()) == reader, "made once, then kept"


def test_the_bridge_survives_replugging_the_board() -> None:
    bridge = compose()["services"]["bridge"]
    assert "devices" not in bridge, "a devices: entry does not survive re-enumeration"
    assert "/dev:/dev" in bridge["volumes"]
    assert set(bridge["device_cgroup_rules"]) == {"c 188:* rmw", "c 166:* rmw"}
    assert bridge["group_add"], "the container user needs the host's dialout group"
    assert "re-enumeration" in COMPOSE.read_text()  # the why, next to the how


def test_every_variable_the_compose_file_reads_is_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text()
    assert variables(compose()) >= {"IOTPIPE_SERIAL", "MQTT_PUBLISH"}  # finds them at all
    for name in variables(compose()):
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
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    top_folders = {package.split(".")[0] for package in setuptools["packages"]}
    for folder in top_folders | set(setuptools["package-dir"].values()):
        assert f"COPY {folder} {folder}" in build, f"the image would lack {folder}/"
    assert "pip install --no-cache-dir --no-index /wheels/*.whl" in runtime


def test_the_image_is_slim_unprivileged_and_checks_its_health() -> None:
    _build, runtime = _stages(DOCKERFILE.read_text())
    assert runtime.startswith("python:") and "-slim" in runtime.splitlines()[0]
    assert not re.search(r"apt-get|gcc|build-essential", runtime), "no build tools at run time"
    assert "&& openssl version\n" in runtime, "init's TLS set-up needs the openssl command"
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
