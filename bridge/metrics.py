"""An optional Prometheus endpoint: ``GET /metrics`` in the text exposition format."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from iotpipe.bridge.events import changed

from iotpipe.endpoints import HostPort

log = logging.getLogger(__name__)


class MetricsServer:
    """Serves whatever ``render`` returns; runs on its own daemon thread."""

    def __init__(self, where: HostPort, render: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics here")
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("metrics: " + format, *args)

        self.server = ThreadingHTTPServer((where.host, where.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()
        host, port = self.server.server_address[:2]
        changed(log, "metrics_serving", url=f"http://{host!s}:{port}/metrics")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
