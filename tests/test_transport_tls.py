"""TLS with a client certificate, through the one transport, against a real Mosquitto whose
mqtts:// listener requires one (``require_certificate true``).

The broker's CA and server certificate come from ``iotpipe.broker.tls`` (what `iotpipe
broker --tls-port` makes); the client certificate is signed by that CA with `openssl` here.
A plain listener beside it lets the test's own clients publish and answer.
"""

from __future__ import annotations

import getpass
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from iotpipe.broker import tls
from tests.conftest import Broker, Procs, free_port, port_open, wait_until
from tests.test_dashboard_api import Responder
from tests.test_dashboard_support import Publisher, http, reading, start_dashboard
from tests.test_doctor import run_doctor


@dataclass
class CertBroker:
    plain: Broker
    tls_port: int
    ca: Path
    cert: Path
    key: Path

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"


def _client_certificate(folder: Path, out: Path) -> tuple[Path, Path]:
    key, csr, crt = out / "client.key", out / "client.csr", out / "client.crt"
    run = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dashboard",
                    "-keyout", str(key), "-out", str(csr)], **run)  # type: ignore[call-overload]  # fmt: skip
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(folder / "ca.crt"),
                    "-CAkey", str(folder / "ca.key"), "-CAcreateserial", "-days", "2",
                    "-out", str(crt)], **run)  # type: ignore[call-overload]  # fmt: skip
    return crt, key


@pytest.fixture
def cert_broker(procs: Procs, tmp_path: Path) -> Iterator[CertBroker]:
    data = tmp_path / "broker"
    folder = tls.ensure(data, [])
    cert, key = _client_certificate(folder, tmp_path)
    plain, secure = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"user {getpass.getuser()}\n"  # as root, Mosquitto would switch to a user who cannot read
        "per_listener_settings false\nallow_anonymous true\nlog_dest stderr\n"
        f"listener {plain} 127.0.0.1\n"
        + tls.listener(secure, "127.0.0.1", folder)
        + "require_certificate true\n"
    )
    proc = procs.start("mosquitto", ["/usr/sbin/mosquitto", "-c", str(conf)])
    wait_until(lambda: port_open(plain) and port_open(secure), 10, "mosquitto")
    yield CertBroker(Broker(plain, data, proc, insecure=True), secure, folder / "ca.crt", cert, key)


def test_the_dashboard_ingests_and_publishes_over_tls_with_its_client_certificate(
    procs: Procs, cert_broker: CertBroker, tmp_path: Path
) -> None:
    """Both of the dashboard's connections (ingest, outputs) log in with the certificate:
    a reading arrives and is stored, a command goes out and its answer comes back."""
    tls_side = Broker(cert_broker.tls_port, cert_broker.plain.data, cert_broker.plain.proc)
    responder = Responder(cert_broker.plain)
    publisher = Publisher(cert_broker.plain)
    try:
        dash = start_dashboard(
            procs, tls_side, tmp_path / "dash",
            "--broker", cert_broker.tls_url, "--mqtt-ca", str(cert_broker.ca),
            "--mqtt-cert", str(cert_broker.cert), "--mqtt-key", str(cert_broker.key),
        )  # fmt: skip
        sent = reading("over-tls", 1, time.time(), temperature=21.5)
        publisher.reading(sent)
        wait_until(lambda: dash.get("/api/devices")[1], 15, "the reading stored")
        (device,) = dash.get("/api/devices")[1]
        assert device["id"] == "over-tls"
        assert device["last"]["metrics"] == {"temperature": 21.5}
        status, body = http(
            dash.url + "/api/devices/over-tls/commands", {"cmd": "read"}, token=dash.token
        )
        assert status == 200 and body["ok"] is True, body
        assert body["result"] == {"seq": 7, "cmd": "read"}
    finally:
        publisher.close()
        responder.close()


def test_without_its_client_certificate_the_dashboard_is_refused(
    procs: Procs, cert_broker: CertBroker, tmp_path: Path
) -> None:
    """The listener really requires the certificate: with the CA alone the handshake
    fails, the dashboard counts the attempts and keeps trying, never connected."""
    port = free_port()
    dash = procs.iotpipe(
        "dashboard", "dashboard", "--broker", cert_broker.tls_url,
        "--mqtt-ca", str(cert_broker.ca), "--http", f"127.0.0.1:{port}",
        "--data", str(tmp_path / "dash"),
    )  # fmt: skip
    wait_until(lambda: port_open(port), 20, "the dashboard's HTTP side")

    def failures() -> int:
        for line in str(http(f"http://127.0.0.1:{port}/metrics")[1]).splitlines():
            if line.startswith("iotpipe_dashboard_connect_failed_total "):
                return int(float(line.split()[1]))
        return 0

    wait_until(lambda: failures() >= 2, 30, "two refused attempts")
    assert "peer did not return a certificate" in cert_broker.plain.proc.output()
    assert http(f"http://127.0.0.1:{port}/healthz")[1]["mqtt_connected"] is False
    assert dash.popen.poll() is None, dash.output()


def test_doctor_logs_in_with_a_client_certificate_and_says_what_to_fix_without(
    cert_broker: CertBroker, tmp_path: Path
) -> None:
    with_cert = run_doctor(
        tmp_path, "--broker", cert_broker.tls_url, "--mqtt-ca", str(cert_broker.ca),
        "--mqtt-cert", str(cert_broker.cert), "--mqtt-key", str(cert_broker.key),
    )  # fmt: skip
    (ok,) = [line for line in with_cert.stdout.splitlines() if line.startswith("  ✓ broker")]
    assert f"logged in to {cert_broker.tls_url}" in ok
    without = run_doctor(
        tmp_path, "--broker", cert_broker.tls_url, "--mqtt-ca", str(cert_broker.ca)
    )
    (failed,) = [line for line in without.stdout.splitlines() if line.startswith("  ✗ broker")]
    assert "closed the TLS connection before answering" in failed, without.stdout
    assert "give --mqtt-cert and --mqtt-key" in without.stdout
