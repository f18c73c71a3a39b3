"""Who may change state through the dashboard: reading stays open, every other method needs
the API token (``Authorization: Bearer …``) or the session cookie that ``/login`` sets,
and a browser request must come from this origin. Commands are rate-limited per client.

The token is made on the first start, in DATA/api-token (mode 0600); the dashboard logs
the login link once at start-up. docs/security.md explains the choices.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, abort, current_app, redirect, request

log = logging.getLogger(__name__)

COOKIE = "iotpipe_session"
CSRF_HEADER = "X-Iotpipe-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
COMMANDS_PER_MINUTE = 30
TRACKED_CLIENTS = 1024  # bounded: the least recently seen client is forgotten first

bp = Blueprint("auth", __name__)


def load_token(data: Path) -> str:
    """The API token in DATA/api-token, made (random, mode 0600) when there is none."""
    path = data / "api-token"
    if path.exists():
        return path.read_text().strip()
    data.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def write_login_url(data: Path, base_url: str, token: str) -> Path:
    """The login link, in DATA/login-url: it holds the token, so into a file only its owner
    reads, never into the log (a journal or a log file may be readable by others)."""
    path = data / "login-url"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when it existed before, with other modes
    with os.fdopen(fd, "w") as out:
        out.write(f"{base_url}login?token={token}\n")
    return path


def _session_value(token: str) -> str:
    # The cookie is derived from the token, so it needs no server-side session store.
    return hmac.new(token.encode(), b"iotpipe-session", hashlib.sha256).hexdigest()


class RateLimit:
    """At most ``limit`` events per client in any ``window`` seconds."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self.seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self.seen.pop(client, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            self.seen[client] = times
            while len(self.seen) > TRACKED_CLIENTS:
                self.seen.popitem(last=False)
            if len(times) >= self.limit:
                return False
            times.append(now)
            return True


def _equal(given: str, secret: str) -> bool:
    # Bytes: compare_digest refuses str with non-ASCII characters, which anyone can send.
    return hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode())


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if referer is None:
            return True  # not a browser (curl, scripts): the token decides
        origin = referer
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def _authorised(token: str) -> bool:
    given = request.headers.get("Authorization", "")
    if given.startswith("Bearer ") and _equal(given[7:].strip(), token):
        return True
    cookie = request.cookies.get(COOKIE, "")
    # The cookie alone is not enough: a cross-site form cannot add this header.
    return bool(
        cookie and _equal(cookie, _session_value(token)) and request.headers.get(CSRF_HEADER) == "1"
    )


def _guard() -> None:
    if request.method in SAFE_METHODS or request.endpoint in (None, "static"):
        return
    token: str = current_app.config["IOTPIPE_API_TOKEN"]
    if not _same_origin():
        abort(403, "cross-site request refused")
    if not _authorised(token):
        abort(401, "log in first: open the /login link the dashboard printed, or send "
                   "Authorization: Bearer <DATA/api-token>")  # fmt: skip
    if request.endpoint == "api.command":
        limit: RateLimit = current_app.extensions["iotpipe_rate_limit"]
        if not limit.allow(request.remote_addr or "?"):
            abort(429, f"more than {COMMANDS_PER_MINUTE} commands a minute; wait a little")


@bp.get("/login")
def login() -> Response:
    """Trade the token for an HttpOnly, SameSite=Strict session cookie, then show the page."""
    token: str = current_app.config["IOTPIPE_API_TOKEN"]
    if not _equal(request.args.get("token", ""), token):
        abort(403, "wrong or missing token: use the link the dashboard printed at start-up")
    response = redirect("/", code=303)
    response.set_cookie(
        COOKIE,
        _session_value(token),
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
        max_age=30 * 86400,
    )
    return response  # type: ignore[return-value]


def install(app: Flask, token: str | None) -> None:
    # Without a token (a test app) no one can change anything: the safe default.
    app.config["IOTPIPE_API_TOKEN"] = token or secrets.token_urlsafe(32)
    app.extensions["iotpipe_rate_limit"] = RateLimit(COMMANDS_PER_MINUTE)
    app.before_request(_guard)
    app.register_blueprint(bp)
