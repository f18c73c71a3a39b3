"""`iotpipe board deploy --transport mqtt`: the Wi-Fi and MQTT keys a board gets, checked
before anything is touched, and the per-board login it is given working against the real
locked-down Mosquitto — deployed to a virtual board under the real MicroPython unix port,
whose restarted firmware the deploy then watches for on the broker."""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iotpipe.board import deploy, verify
from iotpipe.broker import auth, tls
from iotpipe.cli import build_parser
from iotpipe.endpoints import parse_broker_url
from iotpipe.errors import UserError
from tests.conftest import (
    Broker,
    Procs,
    Subscriber,
    free_port,
    start_broker,
    start_tls_broker,
    start_virtual_board,
    wait_until,
)
from tests.test_security import Client

Done = subprocess.CompletedProcess[str]
LAN = "mqtt://192.168.1.20:1883"
PASSWORD = "correct horse battery"
META = (b'{"device":"garden","boot":"b1","fw":"0.2.0","board":"esp32","sensors":["dht"],'
        b'"units":{"t":"C"},"interval_ms":5000,"ts":null}')  # fmt: skip


def parse(*argv: str) -> argparse.Namespace:
    words = ("board", "deploy", "--port", "/dev/null", *argv)
    return build_parser(words).parse_args(words)


def config_of(*argv: str) -> dict[str, Any]:
    return deploy.build_config(parse(*argv))


@pytest.fixture
def broker_data(tmp_path: Path) -> Path:
    """What a locked-down `iotpipe broker` leaves in its data directory, without running it."""
    data = tmp_path / "broker"
    auth.ensure(data, "iotpipe", "homeassistant")
    return data


def wifi(data: Path, *more: str) -> tuple[str, ...]:
    return ("--transport", "mqtt", "--device-id", "garden", "--wifi-ssid", "home",
            "--broker", LAN, "--broker-data", str(data), *more)  # fmt: skip


@pytest.mark.usefixtures("isolated_settings")
class TestTheConfigABoardGets:
    def test_a_serial_deploy_writes_what_it_always_did(self) -> None:
        assert config_of("--device-id", "X", "--interval", "0.2", "--board", "unix") == {
            "device_id": "X", "interval_ms": 200, "board": "unix"
        }  # fmt: skip

    def test_mqtt_keys_with_the_password_from_the_environment(
        self, broker_data: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("IOTPIPE_WIFI_PASSWORD", PASSWORD)
        config = config_of(*wifi(broker_data))
        login = auth.load_board(auth.board_file(broker_data, "garden"))
        assert config == {
            "device_id": "garden", "transport": "mqtt", "wifi_ssid": "home",
            "wifi_password": PASSWORD, "mqtt_host": "192.168.1.20", "mqtt_port": 1883,
            "mqtt_user": "iotpipe-board-garden", "mqtt_password": login.password,
            "base_topic": "iotpipe", "mqtt_ca": None,
        }  # fmt: skip
        assert "user iotpipe-board-garden\n" in (broker_data / "acl").read_text()
        assert config_of(*wifi(broker_data, "--wifi-password", ""))["wifi_password"] == ""
        again = config_of(*wifi(broker_data, "--wifi-password", PASSWORD))
        assert again["mqtt_password"] == login.password, "the login is reused, not remade"

    def test_a_login_file_from_board_login(self, broker_data: Path) -> None:
        creds, _made = auth.add_board(broker_data, "garden")
        file = str(auth.board_file(broker_data, "garden"))
        config = config_of("--transport", "mqtt", "--device-id", "garden", "--wifi-ssid",
                           "home", "--wifi-password", PASSWORD, "--broker", LAN,
                           "--board-login", file)  # fmt: skip
        assert (config["mqtt_user"], config["mqtt_password"]) == (creds.user, creds.password)
        with pytest.raises(UserError, match="is the login of board 'garden', not 'shed'"):
            config_of("--transport", "mqtt", "--device-id", "shed", "--wifi-ssid", "home",
                      "--wifi-password", PASSWORD, "--broker", LAN,
                      "--board-login", file)  # fmt: skip
        with pytest.raises(UserError, match="is not a board login"):
            config_of("--transport", "mqtt", "--device-id", "garden", "--wifi-ssid", "home",
                      "--wifi-password", PASSWORD, "--broker", LAN, "--board-login",
                      str(broker_data / "credentials" / "bridge.json"))  # fmt: skip

    @pytest.mark.parametrize(
        ("change", "said"),
        [
            (("--wifi-ssid", "é" * 17), "34 bytes; an SSID has at most 32"),
            (("--wifi-ssid", ""), "needs the network it joins"),
            (("--wifi-password", "short12"), "7 characters; a WPA passphrase has 8 to 63"),
            (("--wifi-password", "x" * 64), "64 characters"),
            (("--wifi-password", "grüne-wiese"), "printable ASCII"),
            (("--broker", "mqtt://127.0.0.1:1883"), "cannot reach 127.0.0.1"),
            (("--broker", "mqtt://localhost"), "cannot reach localhost"),
            (("--broker", "mqtt://[::1]:1883"), "cannot reach ::1"),
            (("--broker", "mqtt://u:p@pi.local:1883"), "logs in with its own user"),
            (("--device-id", ""), "give --device-id"),
            (("--base-topic", "home"), "grants topics under 'iotpipe', not 'home'"),
            (("--board-login", "/nonexistent"), "not both"),
        ],
    )
    def test_a_bad_setting_is_refused_before_anything_is_touched(
        self, broker_data: Path, change: tuple[str, str], said: str
    ) -> None:
        argv = list(wifi(broker_data, "--wifi-password", PASSWORD))
        if change[0] in argv:
            argv[argv.index(change[0]) + 1] = change[1]
        else:
            argv += change
        with pytest.raises(UserError, match=said):
            config_of(*argv)
        assert not auth.board_file(broker_data, "garden").exists()

    def test_an_mqtts_broker_gives_the_board_the_ca_it_trusts(self, broker_data: Path) -> None:
        argv = wifi(broker_data, "--wifi-password", PASSWORD, "--broker", "mqtts://pi.local")
        config = config_of(*argv)
        assert (config["mqtt_host"], config["mqtt_port"], config["mqtt_ca"]) == (
            "pi.local",
            8883,
            "ca.der",
        )
        with pytest.raises(UserError, match=r"cannot read the CA certificate .*ca\.crt"):
            deploy.board_ca(parse(*argv), config)  # no --tls-port broker ran here yet
        made = tls.tls_dir(broker_data)
        tls.ensure(broker_data, ["pi.local"])
        assert deploy.board_ca(parse(*argv), config) == made / "ca.crt"
        given = broker_data.parent / "given.crt"
        given.write_text((made / "ca.crt").read_text())
        assert deploy.board_ca(parse(*argv, "--mqtt-ca", str(given)), config) == given
        staged = deploy.stage_files(broker_data.parent, config, False, given)
        der = ssl.PEM_cert_to_DER_cert((made / "ca.crt").read_text())
        assert (broker_data.parent / "ca.der").read_bytes() == der
        assert broker_data.parent / "ca.der" in staged
        given.write_text("not a certificate")
        with pytest.raises(UserError, match="cannot read the CA certificate"):
            deploy.board_ca(parse(*argv, "--mqtt-ca", str(given)), config)

    def test_a_ca_is_refused_where_the_board_would_not_use_it(self, broker_data: Path) -> None:
        argv = wifi(broker_data, "--wifi-password", PASSWORD, "--mqtt-ca", "ca.crt")
        with pytest.raises(UserError, match="--mqtt-ca is for an mqtts:// --broker"):
            deploy.board_ca(parse(*argv), config_of(*argv))
        without = ("--transport", "mqtt", "--device-id", "garden", "--wifi-ssid", "home",
                   "--wifi-password", PASSWORD, "--broker", "mqtts://pi.local",
                   "--board-login", str(auth.board_file(broker_data, "garden")))  # fmt: skip
        with pytest.raises(UserError, match="needs the CA that signed its certificate"):
            deploy.board_ca(parse(*without), config_of(*without))
        esp8266 = (*wifi(broker_data, "--wifi-password", PASSWORD), "--board", "esp8266",
                   "--broker", "mqtts://pi.local")  # fmt: skip
        with pytest.raises(UserError, match="esp8266 cannot run the Wi-Fi transport"):
            deploy.board_ca(parse(*esp8266), config_of(*esp8266))

    def test_no_wifi_password_at_all_says_where_to_put_it(self, broker_data: Path) -> None:
        with pytest.raises(UserError, match="IOTPIPE_WIFI_PASSWORD"):
            config_of(*wifi(broker_data))

    def test_a_loopback_broker_only_when_asked_for(self, broker_data: Path) -> None:
        argv = wifi(broker_data, "--wifi-password", PASSWORD, "--allow-loopback")
        argv = tuple("mqtt://127.0.0.1:1883" if a == LAN else a for a in argv)
        assert config_of(*argv)["mqtt_host"] == "127.0.0.1"

    def test_wifi_settings_without_the_mqtt_transport_are_refused(self) -> None:
        with pytest.raises(UserError, match="add --transport mqtt"):
            config_of("--wifi-ssid", "home")
        assert config_of("--transport", "serial", "--wifi-ssid", "home") == {}

    def test_no_login_is_refused(self) -> None:
        with pytest.raises(UserError, match="--broker-data DIR"):
            config_of("--transport", "mqtt", "--device-id", "g", "--wifi-ssid", "home",
                      "--wifi-password", PASSWORD, "--broker", LAN)  # fmt: skip


# --- Deployed to a virtual board, logging in to the real broker ----------------------------


@pytest.fixture
def locked(procs: Procs, tmp_path: Path) -> Broker:
    return start_broker(procs, tmp_path / "broker")


def deploy_wifi(link: Path, broker_url: str, data: Path, *more: str) -> Done:
    return subprocess.run(
        [sys.executable, "-m", "iotpipe", "board", "deploy", "--port", str(link), "--no-mpy",
         "--board", "unix", "--device-id", "garden", "--transport", "mqtt",
         "--wifi-ssid", "home", "--broker", broker_url, "--allow-loopback",
         "--broker-data", str(data), *more],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "IOTPIPE_WIFI_PASSWORD": PASSWORD},
    )  # fmt: skip


def virtual_board(procs: Procs, tmp_path: Path) -> Path:
    link = tmp_path / "tty"
    start_virtual_board(procs, link, "before", 5.0, "--fs", str(tmp_path / "flash"))
    return link


def test_a_deployed_wifi_board_has_its_keys_and_a_login_that_works(
    procs: Procs, locked: Broker, tmp_path: Path
) -> None:
    link = virtual_board(procs, tmp_path)
    done = deploy_wifi(link, locked.url, locked.data, "--interval", "0.5")
    assert done.returncode == 0, done.stdout + done.stderr
    # Seen on the broker: the firmware just copied restarted, joined "Wi-Fi" and published.
    assert "garden is online via the broker at " + locked.url in done.stdout
    assert "on unix, sensors sim, a reading every 0.5 s" in done.stdout
    config = json.loads((tmp_path / "flash" / "config.json").read_text())
    assert config["transport"] == "mqtt" and config["device_id"] == "garden"
    assert config["wifi_ssid"] == "home" and config["wifi_password"] == PASSWORD
    assert (config["mqtt_host"], config["mqtt_port"]) == ("127.0.0.1", locked.port)
    assert config["base_topic"] == "iotpipe" and config["mqtt_user"] == "iotpipe-board-garden"
    assert "told the running broker" in done.stdout and "in clear" in done.stdout
    assert config["mqtt_password"] not in done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr

    # The login on the board's flash, reloaded into the running broker by the deploy.
    board = Client(locked.port, (config["mqtt_user"], config["mqtt_password"]))
    dashboard = Client(locked.port, locked.credentials("dashboard"))
    try:
        assert board.accepted
        assert not board.publish("iotpipe/garden/telemetry").is_failure
        assert board.publish("iotpipe/shed/telemetry").value == 135  # not authorised
        board.subscribe("iotpipe/shed/cmd")
        board.subscribe("iotpipe/garden/cmd")
        dashboard.publish("iotpipe/shed/cmd", b"not yours")
        dashboard.publish("iotpipe/garden/cmd", b"yours")
        wait_until(lambda: board.messages, 10, "its own command")
        assert [m.topic for m in board.messages] == ["iotpipe/garden/cmd"]
    finally:
        board.close()
        dashboard.close()


def test_a_board_deployed_for_an_mqtts_broker_comes_online_over_tls(
    procs: Procs, tmp_path: Path
) -> None:
    secure, port = start_tls_broker(procs, tmp_path / "broker")
    link = virtual_board(procs, tmp_path)
    url = f"mqtts://localhost:{port}"  # a name the broker's certificate holds
    done = deploy_wifi(link, url, secure.data, "--interval", "0.5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ca.der (the CA it trusts)" in done.stdout
    # The board's only way to the broker is the TLS port: its meta came over TLS.
    assert f"garden is online via the broker at {url}" in done.stdout
    config = json.loads((tmp_path / "flash" / "config.json").read_text())
    assert (config["mqtt_port"], config["mqtt_ca"]) == (port, "ca.der")
    der = ssl.PEM_cert_to_DER_cert((secure.data / "tls" / "ca.crt").read_text())
    assert (tmp_path / "flash" / "ca.der").read_bytes() == der


def test_a_board_the_broker_refuses_is_not_taken_for_online_by_its_old_meta(
    procs: Procs, locked: Broker, tmp_path: Path
) -> None:
    link = virtual_board(procs, tmp_path)
    assert deploy_wifi(link, locked.url, locked.data).returncode == 0
    reader = Subscriber(locked.port, "iotpipe/garden/meta", locked.credentials("reader"))
    try:
        wait_until(lambda: reader.messages, 10, "the retained meta of the first deploy")
        assert reader.messages[0].retain
    finally:
        reader.close()
    # A broker that cannot be told of a new login (one running as another user, say):
    # the board gets a new password the running broker does not know, and is refused.
    (locked.data / "mosquitto.pid").unlink()
    auth.board_file(locked.data, "garden").unlink()
    done = deploy_wifi(link, locked.url, locked.data, "--wait", "4")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no broker is running with" in done.stdout and "online via" not in done.stdout
    assert "waiting up to 4 s for garden on the broker" in done.stdout
    said = done.stderr
    assert f"garden did not come online via the broker at {locked.url} within 4 s" in said
    assert "--wifi-ssid 'home'" in said and "`iotpipe broker --bind 0.0.0.0`" in said
    assert f"`mpremote connect {link}` shows its `iotpipe: …` progress lines" in said


def test_a_broker_unreachable_from_here_is_refused_before_the_board_is_touched(
    procs: Procs, locked: Broker, tmp_path: Path
) -> None:
    link = virtual_board(procs, tmp_path)
    nobody = f"mqtt://127.0.0.1:{free_port()}"
    done = deploy_wifi(link, nobody, locked.data)
    assert done.returncode == 1, done.stdout + done.stderr
    said = f"cannot check that garden comes online: cannot reach the broker at {nobody}"
    assert said in done.stderr and "the board was not touched" in done.stderr
    assert "--wait 0" in done.stderr and "stopping the program" not in done.stdout
    config = json.loads((tmp_path / "flash" / "config.json").read_text())
    assert config["device_id"] == "before" and config.get("transport", "serial") == "serial"


WIFI_CONFIG = {"transport": "mqtt", "device_id": "garden", "wifi_ssid": "home",
               "mqtt_host": "192.168.1.20", "mqtt_port": 1883,
               "mqtt_user": "iotpipe-board-garden", "base_topic": "iotpipe"}  # fmt: skip


@pytest.mark.parametrize(
    ("broker_dir", "wait"), [(None, verify.WAIT_S), (Path("unused"), 0.0)], ids=["login", "wait0"]
)
def test_without_a_reader_login_or_a_wait_deploy_says_where_to_watch(
    broker_dir: Path | None, wait: float, capsys: pytest.CaptureFixture[str]
) -> None:
    with verify.Check(WIFI_CONFIG, broker_dir, wait) as check:
        assert check.mqtt and check.watch is None
        assert check.finish("/dev/ttyUSB0") == 0
    out = capsys.readouterr().out
    assert "garden now joins Wi-Fi 'home' and publishes to mqtt://192.168.1.20:1883" in out
    assert "watch for it: iotpipe sub --broker mqtt://192.168.1.20:1883" in out


def test_a_meta_published_while_the_watch_reconnects_still_ends_the_wait(locked: Broker) -> None:
    login = verify.reader_login(locked.data, parse_broker_url(locked.url))
    assert login is not None
    watch = verify.Watch(login, "iotpipe", "garden")
    bridge = Client(locked.port, locked.credentials("bridge"))  # may publish any meta
    meta = verify.Meta("garden", "0.2.0", "esp32", ["dht"], 5000)
    try:
        sock = watch.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # a Wi-Fi hiccup on the deploying machine
        wait_until(lambda: not watch.client.is_connected(), 10, "the watch's connection lost")
        published = bridge.client.publish("iotpipe/garden/meta", META, qos=1, retain=True)
        published.wait_for_publish(10)  # acknowledged while the watch is away
        assert watch.wait(15) == meta
    finally:
        watch.close()
        bridge.close()
    # Closed, the watch leaves no session on the broker to queue for it. Asked only once the
    # broker has read the watch's DISCONNECT (a CONNECT of the same id before it would take
    # the session over): a round trip begun after the DISCONNECT was sent ends after Mosquitto,
    # which serves every socket that was ready before it waits again, read it.
    later = Client(locked.port, locked.credentials("bridge"))
    try:
        later.client.publish("iotpipe/garden/telemetry", b"{}", qos=1).wait_for_publish(10)
    finally:
        later.close()
    again = Client(locked.port, locked.credentials("reader"), client_id=watch.client_id,
                   clean_start=False)  # fmt: skip
    try:
        assert again.accepted and not again.session_present
    finally:
        again.close()


def test_a_serial_board_is_not_watched_on_the_broker() -> None:
    with verify.Check({"device_id": "X"}, Path("unused"), verify.WAIT_S) as check:
        assert not check.mqtt and check.watch is None


@pytest.mark.parametrize(
    ("payload", "meta"),
    [
        (META, verify.Meta("garden", "0.2.0", "esp32", ["dht"], 5000)),
        (b"not json", None),
        (b"[]", None),
        (b'{"device":"garden","fw":"0.2.0","board":"esp32","sensors":[1],"interval_ms":5}', None),
        (b'{"device":"garden","fw":"0.2.0","board":"esp32","sensors":[],"interval_ms":true}',
         None),
        (b'{"fw":"0.2.0","board":"esp32","sensors":[],"interval_ms":5}', None),
    ],
)  # fmt: skip
def test_a_meta_payload_is_read_or_refused(payload: bytes, meta: verify.Meta | None) -> None:
    assert verify.parse_meta(payload) == meta


@pytest.mark.parametrize("text", ["-1", "3601", "soon", "nan"])
def test_a_wait_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="seconds from 0 to 3600"):
        verify.wait_seconds(text)
