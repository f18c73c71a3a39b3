"""`iotpipe alerts test RULE`: a test notification to each of a rule's destinations, now.

It reads the same rules file as the dashboard (``--alerts``) and sends directly, without a
running dashboard, so a new destination can be checked before anything fires.
"""

from __future__ import annotations

import argparse
import time

from iotpipe.errors import UserError
from iotpipe.settings import add_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rule", metavar="RULE", help="the rule's name in the rules file")
    add_settings(parser, "alerts", "public-url", "log-level", required=("alerts",))


def run(args: argparse.Namespace) -> int:
    from iotpipe.dashboard.alert_rules import load_rules
    from iotpipe.dashboard.notify import masked, send_now

    rules = load_rules(args.alerts)
    rule = rules.rule(args.rule)
    destinations = rules.destinations_of(rule)
    if not destinations:
        raise UserError(f"rule {rule.name!r} has no destinations — add 'to' or default_to")
    title = f"[TEST] {rule.name}"
    body = (
        f"A test of the alert rule {rule.name!r} ({rule.kind}"
        f"{', ' + rule.threshold_text() if rule.threshold_text() else ''}), sent by "
        f"iotpipe alerts test at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}."
        + (f"\nchart: {args.public_url}" if args.public_url else "")
    )
    failed = []
    for dest in destinations:
        ok = send_now(dest.url, title, body)
        print(f"{'sent' if ok else 'FAILED'}: {dest.name} ({masked(dest.url)})")
        if not ok:
            failed.append(dest.name)
    if failed:
        raise UserError(
            f"could not notify {', '.join(failed)} — check the URL, the network and the "
            "service's credentials (--log-level debug shows what Apprise said)"
        )
    return 0
