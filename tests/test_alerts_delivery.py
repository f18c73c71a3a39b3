"""Real delivery through Apprise to local receivers: email to an SMTP server on loopback,
json:// and ntfy:// to a small HTTP server; a failing one retried, counted, given up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iotpipe.counters import Counters
from iotpipe.dashboard.alert_rules import Destination
from iotpipe.dashboard.notify import Notifier
from tests.alerts_support import HttpReceiver, SmtpReceiver
from tests.conftest import free_port, wait_until
from tests.test_cli import iotpipe

TITLE = "[FIRING] greenhouse too hot — dev-a"
BODY = "greenhouse too hot: dev-a temperature 36.5 °C (> 35)\nvalue: 36.5 °C"


@pytest.fixture
def notifier() -> Iterator[tuple[Notifier, Counters]]:
    counters = Counters("t")
    n = Notifier(counters, retry_for=60)
    n.start()
    yield n, counters
    n.stop()


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


def test_email_arrives_at_a_real_smtp_server(notifier: tuple[Notifier, Counters]) -> None:
    n, counters = notifier
    smtp = SmtpReceiver()
    try:
        n.send(Destination("mail", smtp.url("grower@example.com")), TITLE, BODY)
        wait_until(lambda: smtp.mailbox.messages, 60, "an email")
    finally:
        smtp.close()
    (message,) = smtp.mailbox.messages
    assert smtp.mailbox.envelopes == [("iotpipe@example.com", ["grower@example.com"])]
    assert message["Subject"] == TITLE
    text = message.get_body(preferencelist=("plain",))
    assert text is not None and text.get_content().replace("\r\n", "\n").strip() == BODY
    wait_until(lambda: counters.get("alert_sent") == 1, 30, "counted as sent")


def test_json_webhook_gets_title_and_message(
    notifier: tuple[Notifier, Counters], http: HttpReceiver
) -> None:
    n, _ = notifier
    n.send(Destination("hook", f"json://127.0.0.1:{http.port}/alerts"), TITLE, BODY)
    wait_until(lambda: http.got, 60, "a webhook")
    (request,) = http.got
    assert request.path == "/alerts"
    body = request.json()
    assert (body["title"], body["message"]) == (TITLE, BODY)


def test_ntfy_gets_topic_title_and_message(
    notifier: tuple[Notifier, Counters], http: HttpReceiver
) -> None:
    n, _ = notifier
    n.send(Destination("phone", f"ntfy://127.0.0.1:{http.port}/greenhouse"), TITLE, BODY)
    wait_until(lambda: http.got, 60, "an ntfy message")
    body = http.got[0].json()
    assert (body["topic"], body["title"], body["message"]) == ("greenhouse", TITLE, BODY)


def test_a_failing_destination_is_retried_with_backoff_then_delivered(
    notifier: tuple[Notifier, Counters],
) -> None:
    n, counters = notifier
    http = HttpReceiver(fail_first=2)
    try:
        n.send(Destination("hook", f"json://127.0.0.1:{http.port}/"), TITLE, BODY)
        wait_until(lambda: counters.get("alert_failed", "retrying") >= 1, 60, "a failure")
        (state,) = n.states()
        assert state["ok"] is False and state["failures"] >= 1
        wait_until(lambda: http.got, 90, "delivery after the retries")
    finally:
        http.close()
    assert http.attempts == 3 and http.got[0].json()["message"] == BODY
    assert counters.get("alert_failed", "retrying") == 2
    wait_until(lambda: n.states()[0]["ok"], 30, "destination ok again")
    assert counters.get("alert_sent") == 1


def test_a_destination_down_for_longer_than_the_retry_time_is_given_up_and_counted() -> None:
    counters = Counters("t")
    n = Notifier(counters, retry_for=5)
    n.start()
    try:
        n.send(Destination("hook", f"json://127.0.0.1:{free_port()}/"), TITLE, BODY)
        wait_until(lambda: counters.get("alert_failed", "gave_up") == 1, 90, "given up")
        assert n.pending() == 0 and counters.get("alert_sent") == 0
        assert counters.get("alert_failed", "retrying") >= 1
    finally:
        n.stop()


def test_iotpipe_alerts_test_sends_to_the_rules_destinations(
    http: HttpReceiver, tmp_path: Path
) -> None:
    down = free_port()
    rules = tmp_path / "alerts.toml"
    rules.write_text(
        f'[destinations]\nhook = "json://user:pw@127.0.0.1:{http.port}/in"\n'
        f'gone = "json://127.0.0.1:{down}/"\n'
        '[[rule]]\nname = "too hot"\nmetric = "temperature"\nabove = 35\nto = "hook"\n'
        '[[rule]]\nname = "nowhere"\nmetric = "temperature"\nbelow = 0\nto = "gone"\n'
    )
    ok = iotpipe("alerts", "test", "too hot", "--alerts", str(rules))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"sent: hook (json://user:****@127.0.0.1:{http.port}/…)"
    (request,) = http.got
    assert request.json()["title"] == "[TEST] too hot"
    assert "A test of the alert rule 'too hot' (threshold, > 35)" in request.json()["message"]
    failed = iotpipe("alerts", "test", "nowhere", "--alerts", str(rules))
    assert failed.returncode == 1 and "FAILED: gone" in failed.stdout
    assert "iotpipe: could not notify gone" in failed.stderr and "Traceback" not in failed.stderr
    unknown = iotpipe("alerts", "test", "nope", "--alerts", str(rules))
    assert unknown.returncode == 1
    assert "no alert rule named 'nope' (rules: too hot, nowhere)" in unknown.stderr
