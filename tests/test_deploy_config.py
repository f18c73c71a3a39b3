"""The configuration file: where it is found, what it may hold, and its place in the
precedence flag > environment > config file > default."""

from __future__ import annotations

import argparse
import importlib
import os
import re
from pathlib import Path

import pytest

from iotpipe import configfile
from iotpipe.cli import COMMANDS, build_parser, main
from iotpipe.endpoints import parse_broker_url
from iotpipe.errors import UserError
from tests.conftest import ROOT, FlagRecorder

pytestmark = pytest.mark.usefixtures("isolated_settings")


def parse(*argv: str) -> argparse.Namespace:
    return build_parser(argv).parse_args(argv)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_flag_beats_environment_beats_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "c.toml", 'base-topic = "from-file"\nrate = 3\n')
    monkeypatch.setenv("IOTPIPE_CONFIG", str(config))
    args = parse("board", "virtual", "--link", "x")
    assert args.rate == 3.0
    assert parse("dashboard").base_topic == "from-file"
    assert parse("dashboard").history == 100_000  # not in the file: the default
    monkeypatch.setenv("IOTPIPE_BASE_TOPIC", "from-env")
    assert parse("dashboard").base_topic == "from-env"
    assert parse("dashboard", "--base-topic", "from-flag").base_topic == "from-flag"


def test_a_command_table_beats_flat_keys_and_names_nest(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        'broker = "mqtt://flat:1883"\n'
        '[dashboard]\nbroker = "mqtt://dash:1884"\nhttp_threads = 16\n'
        "[board.virtual]\nrate = 5\n",
    )
    assert parse("--config", str(config), "dashboard").broker.host == "dash"
    assert parse("--config", str(config), "dashboard").http_threads == 16
    assert parse("bridge", "--serial", "x", "--config", str(config)).broker.host == "flat"
    assert parse("--config", str(config), "board", "virtual", "--link", "x").rate == 5.0


def test_the_default_file_is_read_only_when_present(tmp_path: Path) -> None:
    assert parse("dashboard").base_topic == "iotpipe"
    write(tmp_path / "xdg" / "iotpipe" / "config.toml", 'base-topic = "home"\n')
    assert parse("dashboard").base_topic == "home"


def test_booleans_and_home_paths_read_as_their_flags_would(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", '[bridge]\nha-discovery = false\nspool = "~/spool"\n')
    args = parse("--config", str(config), "bridge", "--serial", "x")
    assert args.ha_discovery is False
    assert args.spool == Path.home() / "spool"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('brokr = "mqtt://x"\n', "unknown setting 'brokr'"),
        ("[bridges]\nbaud = 9600\n", "[bridges] is not an iotpipe command"),
        ("[dashboard]\nbaud = 9600\n", "'baud' is not a setting of `iotpipe dashboard`"),
        ('broker = "tcp://x"\n', "broker = 'tcp://x'"),
        ("broker = [1, 2]\n", "must be a string or a number"),
        ("broker = \n", "is not valid TOML"),
    ],
)
def test_a_mistake_in_the_file_names_the_file_and_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    config = write(tmp_path / "c.toml", text)
    with pytest.raises(UserError, match=r"c\.toml") as caught:
        parse("--config", str(config), "dashboard")
    assert message in str(caught.value)


def test_a_named_file_that_is_missing_is_an_error_not_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IOTPIPE_CONFIG", str(tmp_path / "nope.toml"))
    assert main(["board", "ports"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("iotpipe: cannot read the config file") and "nope.toml" in err
    assert "Traceback" not in err


def test_a_config_flag_reaches_child_processes(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'base-topic = "kids"\n')
    parse("--config", str(config), "dashboard")
    # `iotpipe up` starts the parts as processes: they read the same file.
    assert os.environ["IOTPIPE_CONFIG"] == str(config)


def test_help_explains_the_file_and_the_precedence(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["bridge", "--help"]):
        with pytest.raises(SystemExit):
            parse(*argv)
        out = " ".join(capsys.readouterr().out.split())
        assert "--config FILE" in out
        assert "~/.config/iotpipe/config.toml" in out
        assert "A flag wins over the environment, the environment over the file" in out


@pytest.mark.parametrize("doc", ["docs/configuration.md", "docs/deploy.md"])
def test_the_example_config_files_in_the_docs_are_valid(tmp_path: Path, doc: str) -> None:
    text = (ROOT / doc).read_text()
    examples = re.findall(r"^```toml\n(.*?)^```", text, flags=re.S | re.M)
    assert examples
    for n, example in enumerate(examples):
        config = write(tmp_path / f"{n}.toml", example)
        loaded = configfile.load(config)
        for command in loaded.tables:
            argv = ["--config", str(config), *command.split()]
            argv += {"bridge": ["--serial", "x"], "board virtual": ["--link", "x"]}.get(command, [])
            parse(*argv)


@pytest.mark.parametrize("words", [w for w, _module, _help in COMMANDS], ids=" ".join)
def test_every_command_says_what_it_does_and_each_flag_its_default(
    words: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*words, "--help")
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    help_text = next(h for w, _m, h in COMMANDS if w == words)
    assert help_text in text
    build_parser(words)  # chooses the config file, as a run does
    parser = FlagRecorder(prog=f"iotpipe {' '.join(words)}")
    module = next(m for w, m, _h in COMMANDS if w == words)
    importlib.import_module(module).configure(parser)
    for action in parser.added:
        if action.option_strings and action.dest != "help":
            flag = f"iotpipe {' '.join(words)} {action.option_strings}"
            if action.required:  # a required flag has no default to claim
                assert "default" not in action.help, flag
            else:
                assert "default" in action.help or action.default in (None, False), flag


def test_help_says_where_a_value_came_from_and_hides_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path / "c.toml", 'mqtt-user = "ada"\n')
    monkeypatch.setenv("IOTPIPE_BROKER", "mqtt://ada:s3cret@broker.lan:1883")
    monkeypatch.setenv("IOTPIPE_MQTT_PASSWORD", "s3cret")
    with pytest.raises(SystemExit):
        parse("--config", str(config), "sub", "--help")
    out = " ".join(capsys.readouterr().out.split())
    assert "now mqtt://ada:***@broker.lan:1883 from $IOTPIPE_BROKER" in out
    assert "now ada from the config file" in out
    assert "s3cret" not in out


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://pi.local", ("pi.local", 1883, None)),
        ("mqtts://pi.local", ("pi.local", 8883, None)),
        ("mqtt://ada:s3cret@pi.local", ("pi.local", 1883, "ada")),  # no port after a login
        ("mqtt://ada:s3cret@[::1]:1884", ("::1", 1884, "ada")),
        ("mqtt://[::1]", ("::1", 1883, None)),
    ],
)
def test_broker_urls_take_the_default_port_unless_one_follows_the_host(
    url: str, expected: tuple[str, int, str | None]
) -> None:
    parsed = parse_broker_url(url)
    assert (parsed.host, parsed.port, parsed.username) == expected
