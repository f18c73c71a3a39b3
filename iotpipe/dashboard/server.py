"""Serving the app with waitress, a production WSGI server (not Flask's development one).

waitress runs each request on a thread from a fixed pool and writes each chunk of a
streamed response as soon as it is produced, which is what Server-Sent Events need. An
open stream holds its thread, so the pool is sized by ``--http-threads`` and the live
streams are capped below it: a few threads always stay free for the page and the API.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from flask import Flask

from iotpipe.endpoints import HostPort
from iotpipe.errors import UserError

log = logging.getLogger(__name__)

SPARE_THREADS = 6
"""Threads kept for ordinary requests however many live streams are open."""


def stream_limit(threads: int) -> int:
    return max(1, threads - SPARE_THREADS)


def serve(app: Flask, http: HostPort, threads: int, end_streams: Callable[[], None]) -> None:
    """Serve until SIGTERM or SIGINT. ``end_streams`` runs first on the way out: waitress
    waits for busy threads when it closes, and an open live stream never finishes alone."""
    import waitress

    try:
        server: Any = waitress.create_server(
            app,
            host=http.host,
            port=http.port,
            threads=threads,
            connection_limit=threads * 4,
            channel_timeout=60,  # live streams send a keep-alive every 15 s
            asyncore_use_poll=True,  # poll(): no 1024-descriptor limit of select()
            ident="iotpipe",
        )
    except OSError as exc:
        raise UserError(
            f"cannot listen on {http}: {exc.strerror} — choose another --http"
        ) from None

    def stop(signum: int, frame: object) -> None:
        # waitress itself catches this in run() and closes, waiting for busy threads.
        end_streams()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("dashboard at %s", http.url)
    try:
        server.run()
    finally:
        log.info("stopping")
        end_streams()
        server.close()
