"""The page's static files under a content hash, gzipped once: ``/assets/app.3f2a9c0e1b7d.js``.

A name that changes with the content lets a browser keep each file for a year without ever
asking again (``immutable``), and a new release is fetched at once because its names are
new. Every ``.js`` and ``.css`` under ``static/`` (``vendor/`` included) is an asset by
being there: a new script is one file plus one ``{{ asset("name.js") }}`` in the template.
Each file is compressed once per process, in a thread started with the app, so the first
browser does not wait for it (plotly.js, 1.2 MB, takes a second or more on a busy Pi-class
machine); a request that comes before it is done compresses it itself, once.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import NotFound

TYPES = {".js": "text/javascript", ".css": "text/css"}
HASH_CHARS = 12
YEAR_S = 365 * 86400

bp = Blueprint("assets", __name__)


_GZIPPED: dict[tuple[Path, str], bytes] = {}
"""Compressed bodies by file and content hash, for the whole process."""


@dataclass(frozen=True)
class Asset:
    path: Path
    mimetype: str
    etag: str

    def body(self) -> bytes:
        return self.path.read_bytes()

    def gzipped(self) -> bytes:
        # No lock: two threads may both compress a file once, but no request waits for
        # another file's compression.
        key = (self.path, self.etag)
        found = _GZIPPED.get(key)
        if found is None:
            found = _GZIPPED[key] = gzip.compress(self.body(), compresslevel=9, mtime=0)
        return found


class Assets:
    """Versioned names for the files under ``root``, and the files behind them."""

    def __init__(self, root: Path) -> None:
        self._urls: dict[str, str] = {}
        self._files: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            mimetype = TYPES.get(path.suffix)
            if mimetype is None or not path.is_file():
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:HASH_CHARS]
            versioned = f"{path.stem}.{digest}{path.suffix}"
            if path.name in self._urls:
                raise ValueError(f"two static files named {path.name}: names must be unique")
            self._urls[path.name] = f"/assets/{versioned}"
            self._files[versioned] = Asset(path, mimetype, digest)

    def url(self, name: str) -> str:
        """The versioned URL of ``name`` (a file name under ``static/``, no folder)."""
        try:
            return self._urls[name]
        except KeyError:
            raise KeyError(f"no static file named {name!r}") from None

    def get(self, versioned: str) -> Asset | None:
        return self._files.get(versioned)

    def compress_all(self) -> None:
        for asset in self._files.values():
            asset.gzipped()


def install(app: Flask, root: Path) -> None:
    assets = Assets(root)
    threading.Thread(target=assets.compress_all, name="assets-gzip", daemon=True).start()
    app.extensions["iotpipe_assets"] = assets
    app.jinja_env.globals["asset"] = assets.url
    app.register_blueprint(bp)


@bp.get("/assets/<name>")
def asset(name: str) -> Response:
    """A static file by its versioned name, gzipped for a browser that takes gzip."""
    assets: Assets = current_app.extensions["iotpipe_assets"]
    found = assets.get(name)
    if found is None:
        raise NotFound(f"no asset {name} (the page may be older than the dashboard: reload it)")
    headers = {
        "Cache-Control": f"public, max-age={YEAR_S}, immutable",
        "ETag": f'"{found.etag}"',
        "Vary": "Accept-Encoding",
    }
    if request.if_none_match.contains(found.etag):
        return Response(status=304, headers=headers)
    if request.accept_encodings.quality("gzip") > 0:
        headers["Content-Encoding"] = "gzip"
        return Response(found.gzipped(), mimetype=found.mimetype, headers=headers)
    return Response(found.body(), mimetype=found.mimetype, headers=headers)
