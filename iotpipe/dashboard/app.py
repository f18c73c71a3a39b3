"""``create_app`` — the app factory, the one place that puts the Flask app together from the
services it is given (``daemon.py`` gives the running dashboard's, a test its own).

The page, the JSON API, the live stream and the operational endpoints are blueprints in
their own modules; none imports another (tests/test_layers.py): what they share is in
``services.py`` and ``params.py``. Errors from any of them come back as
``{"error": "..."}`` with the right status, never as an HTML error page or a traceback.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from iotpipe.dashboard import api, assets, auth, ops, page, stream
from iotpipe.dashboard.params import BadRequest, NotFound
from iotpipe.dashboard.services import Services

HERE = Path(__file__).parent
MAX_BODY_BYTES = 16 * 1024


def _json_error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), status


def create_app(services: Services, api_token: str | None = None) -> Flask:
    app = Flask(__name__, static_folder=str(HERE / "static"), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["iotpipe"] = services
    for blueprint in (page.bp, api.bp, stream.bp, ops.bp):
        app.register_blueprint(blueprint)
    assets.install(app, HERE / "static")
    auth.install(app, api_token)
    app.register_error_handler(BadRequest, lambda e: _json_error(400, str(e)))
    app.register_error_handler(NotFound, lambda e: _json_error(404, str(e)))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return _json_error(exc.code or 500, exc.description or exc.name)

    @app.after_request
    def no_third_parties(response: Response) -> Response:
        # Everything the page needs comes from here; a strict policy keeps it that way.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    return app
