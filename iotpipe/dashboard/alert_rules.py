"""The alert rules file: TOML in, typed rules and destinations out, or an error that says where.

Pure apart from reading the file and the environment (secrets). Every key is checked here,
so the engine behind works with clean values; a mistake names the line of its ``[[rule]]``
table and the key, which is what a user needs when a reload is refused. docs/alerts.md is
the reference for every key.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotpipe.durations import parse_duration
from iotpipe.errors import UserError
from iotpipe.wire import DEVICE_ID_RE, METRIC_RE

KINDS = ("threshold", "rate", "quiet", "offline", "missing", "store")
"""threshold: above/below; rate: change within a window; quiet: no reading for N intervals;
offline: the status topic says so; missing: the bridge's gap reports; store: cannot write."""
MAX_RULES = 500
MAX_REMINDERS = 100
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

RULE_KEYS = {
    "name", "kind", "device", "metric", "above", "below", "hysteresis", "for",
    "rise", "fall", "within", "intervals", "to", "repeat", "repeat_max", "quiet",
}  # fmt: skip
NEEDS_METRIC = ("threshold", "rate")


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    url: str  # with secrets filled in: never logged or shown (see notify.masked)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    kind: str
    device: str  # a device id or "*"
    metric: str  # "" for kinds about a whole board
    above: float | None = None
    below: float | None = None
    hysteresis: float = 0.0
    for_s: float = 0.0
    rise: float | None = None
    fall: float | None = None
    within_s: float = 0.0
    intervals: float = 3.0
    to: tuple[str, ...] = ()
    repeat_s: float | None = None
    repeat_max: int = 0
    quiet_s: float = 0.0

    def matches(self, device: str) -> bool:
        return self.device in ("*", device)

    def threshold_text(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        if self.rise is not None:
            parts.append(f"rise > {self.rise:g} in {self.within_s:g} s")
        if self.fall is not None:
            parts.append(f"fall > {self.fall:g} in {self.within_s:g} s")
        if self.kind == "quiet":
            parts.append(f"no reading for {self.intervals:g} intervals")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    destinations: dict[str, Destination]

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        known = ", ".join(r.name for r in self.rules) or "none"
        raise UserError(f"no alert rule named {name!r} (rules: {known})")

    def destinations_of(self, rule: Rule) -> list[Destination]:
        return [self.destinations[n] for n in rule.to]


EMPTY = RuleSet((), {})


def _number(raw: dict[str, Any], key: str, where: str, positive: bool = False) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        raise UserError(f"{where}: {key!r} must be a{' positive' if positive else ''} number")
    return float(value)


def _duration(raw: dict[str, Any], key: str, where: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return float(value)
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise UserError(f"{where}: {key!r}: {exc}") from None


def _text(raw: dict[str, Any], key: str, where: str, default: str, pattern: re.Pattern[str]) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not (value == default or pattern.fullmatch(value)):
        raise UserError(f"{where}: {key!r} is not valid: {value!r}")
    return value


def _targets(
    raw: dict[str, Any], where: str, default: tuple[str, ...], known: set[str]
) -> tuple[str, ...]:
    value = raw.get("to", list(default))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: 'to' must be a destination name or a list of them")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise UserError(
            f"{where}: 'to' names {', '.join(unknown)}, not in [destinations] "
            f"({', '.join(sorted(known)) or 'none defined'})"
        )
    return tuple(value)


def _rule(raw: Any, where: str, default_to: tuple[str, ...], known: set[str]) -> Rule:
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a table")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise UserError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    kind = raw.get("kind", "rate" if ("rise" in raw or "fall" in raw) else "threshold")
    if kind not in KINDS:
        raise UserError(f"{where}: 'kind' must be one of {', '.join(KINDS)}")
    device = raw.get("device", "*")
    if not isinstance(device, str) or not (device == "*" or DEVICE_ID_RE.fullmatch(device)):
        raise UserError(f"{where}: 'device' must be a device id or \"*\"")
    metric = raw.get("metric", "")
    if kind in NEEDS_METRIC and (not isinstance(metric, str) or not METRIC_RE.fullmatch(metric)):
        raise UserError(f"{where}: 'metric' must be a metric name such as \"temperature\"")
    above, below = _number(raw, "above", where), _number(raw, "below", where)
    rise, fall = _number(raw, "rise", where, True), _number(raw, "fall", where, True)
    within = _duration(raw, "within", where)
    if kind == "threshold" and above is None and below is None:
        raise UserError(f"{where}: give 'above', 'below' or both")
    if kind == "rate" and (within is None or (rise is None and fall is None)):
        raise UserError(f"{where}: a rate rule needs 'rise' or 'fall' and 'within'")
    repeat_max = raw.get("repeat_max", 3 if "repeat" in raw else 0)
    if not isinstance(repeat_max, int) or not 0 <= repeat_max <= MAX_REMINDERS:
        raise UserError(f"{where}: 'repeat_max' must be a whole number from 0 to {MAX_REMINDERS}")
    name = raw.get("name", f"{kind} {metric}".strip())
    if not isinstance(name, str) or not name.strip() or any(ord(c) < 32 for c in name):
        raise UserError(f"{where}: 'name' must be text on one line")
    return Rule(
        name=name.strip()[:80], kind=kind, device=device, metric=str(metric),
        above=above, below=below, hysteresis=_number(raw, "hysteresis", where, True) or 0.0,
        for_s=_duration(raw, "for", where) or 0.0, rise=rise, fall=fall,
        within_s=within or 0.0, intervals=_number(raw, "intervals", where, True) or 3.0,
        to=_targets(raw, where, default_to, known), repeat_s=_duration(raw, "repeat", where),
        repeat_max=repeat_max, quiet_s=_duration(raw, "quiet", where) or 0.0,
    )  # fmt: skip


def _secret_file(path: Path, where: str) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"{where}: {path} is readable by others — chmod 600 {path}")
    return text


def _destination(name: str, raw: Any, where: str, base: Path) -> Destination:
    if not NAME_RE.fullmatch(name):
        raise UserError(f"{where}: destination names are 1-40 letters, digits, '_', '.', '-'")
    if isinstance(raw, dict) and set(raw) == {"file"} and isinstance(raw["file"], str):
        url = _secret_file(base / raw["file"], where)
    elif isinstance(raw, str):
        url = raw
    else:
        raise UserError(f'{where}: give an Apprise URL or {{ file = "PATH" }} (a 0600 file)')

    def env(match: re.Match[str]) -> str:
        value = os.environ.get(match[1])
        if value is None:
            raise UserError(f"{where}: the environment variable {match[1]} is not set")
        return value

    url = ENV_RE.sub(env, url)
    if "://" not in url:
        raise UserError(f"{where}: {name!r} is not an Apprise URL such as ntfy://ntfy.sh/topic")
    return Destination(name, url)


def _line_of(text: str, header: str, index: int) -> int:
    """The line of the ``index``-th ``header`` table (1-based lines), for error messages."""
    seen = 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(header):
            if seen == index:
                return number
            seen += 1
    return 1


def parse_rules(text: str, source: str, base: Path) -> RuleSet:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{source} is not valid TOML: {exc}") from None
    unknown = set(doc) - {"rule", "destinations", "default_to"}
    if unknown:
        raise UserError(f"{source}: unknown top-level keys {', '.join(sorted(unknown))}")
    raw_dest = doc.get("destinations", {})
    if not isinstance(raw_dest, dict):
        raise UserError(f"{source}: [destinations] must be a table of name = URL")
    where = f"{source} line {_line_of(text, '[destinations]', 0)} [destinations]"
    dests = {n: _destination(n, v, f"{where} {n}", base) for n, v in raw_dest.items()}
    default_to = doc.get("default_to", sorted(dests) if len(dests) == 1 else [])
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list) or len(raw_rules) > MAX_RULES:
        raise UserError(f"{source}: rules are written as [[rule]] tables, at most {MAX_RULES}")
    top = f"{source} default_to"
    default = _targets({"to": default_to}, top, (), set(dests))
    rules = tuple(
        _rule(raw, f"{source} line {_line_of(text, '[[rule]]', i)} (rule {i + 1})", default,
              set(dests))
        for i, raw in enumerate(raw_rules)
    )  # fmt: skip
    names = [r.name for r in rules]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"{source}: rule names must be unique; twice: {', '.join(twice)}")
    return RuleSet(rules, dests)


def load_rules(path: Path) -> RuleSet:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read alert rules {path}: {exc.strerror}") from None
    return parse_rules(text, str(path), path.parent)
