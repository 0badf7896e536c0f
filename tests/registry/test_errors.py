"""A bug answers JSON 500 with the request id, and is logged once with its traceback."""

from __future__ import annotations

import logging
import socket
import threading
import time

import httpx
import uvicorn

from partsbin.registry.config import Settings
from partsbin.registry.main import create_app


def test_an_unexpected_exception_is_a_json_500_logged_once(tmp_path, caplog):
    from partsbin.registry.db.migrate import upgrade
    from partsbin.registry.db.session import make_engine

    settings = Settings(data_dir=tmp_path)
    upgrade(make_engine(settings.resolved_database_url))
    app = create_app(settings)

    def broken() -> None:
        raise ZeroDivisionError("a bug")

    app.add_api_route("/broken", broken)  # a route with a bug, beside the real ones
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    with caplog.at_level(logging.INFO):
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                r = client.get("/broken", headers={"X-Request-ID": "req-42"})
                assert client.get("/healthz").status_code == 200, "the registry goes on serving"
        finally:
            server.should_exit = True
            thread.join(10)
    assert r.status_code == 500 and r.headers["x-request-id"] == "req-42"
    assert r.json() == {
        "detail": "unexpected server error; quote request id req-42 when reporting it",
        "code": "internal_error",
        "request_id": "req-42",
    }
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].name == "partsbin.registry"
    assert errors[0].exc_info and errors[0].exc_info[0] is ZeroDivisionError
    assert getattr(errors[0], "request_id", None) == "req-42" and "req-42" in errors[0].getMessage()
