"""Webhooks against a real HTTP receiver on 127.0.0.1: every event is delivered, signed,
recorded with its status; a receiver that is down gets the delivery once it is back; a
subscription points only where its maker may send requests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from partsbin import Registry, verify_signature
from partsbin.client.errors import Conflict, RegistryError, Unauthorized, WebhookNotFound
from tests.conftest import free_port
from tests.helpers import extractor_card, head_card, network, own_test_digest, write_component

FAST = {"webhook_poll": 0.1, "webhook_retry_base": 0.3}


class Receiver:
    """An HTTP server that keeps what it is sent; can answer an error, stop, and start again on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answer = 204
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.answer)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[str]:
        return [h["x-partsbin-event"] for h, _ in self.received]

    def wait_for(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for headers, body in list(self.received):
                if headers["x-partsbin-event"] == event:
                    return {"headers": headers, "body": body, "json": json.loads(body)}
            time.sleep(0.05)
        raise AssertionError(f"no {event} delivery within {timeout} s; received {self.events()}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


def _wait(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: last {value!r}")
        time.sleep(0.05)


def _push_pair(reg: Registry, tmp_path: Path, ns: str = "lab") -> tuple[str, str]:
    net = network(0)
    ext = reg.push(write_component(tmp_path / "e.safetensors", net.extractor(), extractor_card(f"{ns}/ext")))
    head = reg.push(write_component(tmp_path / "h.safetensors", net.head(), head_card(f"{ns}/head")))
    return ext.ref, head.ref


def test_every_event_reaches_a_subscriber_signed(make_registry, client_for, receiver, tmp_path):
    live = make_registry(webhook_allow_private=True, **FAST)
    owner = client_for(live, live.token("publish", ["lab"], owner=True))
    hook = owner.create_webhook(receiver.url, namespace="lab", description="ci")
    assert hook.secret and hook.events == sorted(
        ["alias.moved", "component.published", "evaluation.recorded", "job.finished", "version.yanked"]
    )

    # A ping first, signed with the secret shown once.
    ping = receiver.wait_for("ping")
    assert verify_signature(hook.secret, ping["body"], ping["headers"]["x-partsbin-signature-256"])
    assert not verify_signature("another secret entirely", ping["body"], ping["headers"]["x-partsbin-signature-256"])
    assert ping["json"]["data"]["webhook"]["id"] == hook.id

    ext, head = _push_pair(owner, tmp_path)
    owner.set_alias("lab/head", "stable", 1)
    owner.yank(ext, "superseded")
    owner.unyank(ext)
    owner.post_evaluation(
        extractor=ext,
        head=head,
        dataset="digits",
        value=0.9,
        samples=100,
        bn_mode="batch",
        data_digest=own_test_digest("lab/ext"),
    )
    job = owner.submit({"kind": "evaluate", "name": "e", "namespace": "lab", "extractor": ext, "heads": [head]})
    job.cancel()

    published = receiver.wait_for("component.published")
    assert published["json"]["namespace"] == "lab"
    # Deliveries are sent several at a time: receivers see them in no set order.
    _wait(lambda: receiver.events().count("component.published") == 2)
    refs = {
        json.loads(b)["data"]["component"]["ref"] for h, b in receiver.received if "published" in h["x-partsbin-event"]
    }
    assert refs == {ext, head}
    moved = receiver.wait_for("alias.moved")["json"]["data"]
    assert moved == {"alias": "lab/head:stable", "version": 1, "previous": None}
    recorded = receiver.wait_for("evaluation.recorded")["json"]["data"]
    assert recorded["evaluation"]["own_test"] and recorded["evaluation"]["value"] == 0.9
    assert recorded["head"]["ref"] == head
    finished = receiver.wait_for("job.finished")["json"]["data"]["job"]
    assert finished["id"] == job.id and finished["status"] == "cancelled" and finished["kind"] == "evaluate"
    _wait(lambda: receiver.events().count("version.yanked") == 2)
    for headers, body in receiver.received:
        assert verify_signature(hook.secret, body, headers["x-partsbin-signature-256"]), headers
        assert headers["x-partsbin-delivery"] == json.loads(body)["delivery"]

    # Each delivery is recorded with its status and attempts, newest first.
    deliveries = _wait(
        lambda: (d := owner.webhook_deliveries(hook.id)) and all(x.status == "succeeded" for x in d) and d
    )
    assert len(deliveries) == len(receiver.received) == 8
    assert deliveries[-1].event == "ping" and deliveries[0].event == "job.finished"
    assert all(d.attempts == 1 and d.history[0]["status"] == 204 and d.response_status == 204 for d in deliveries)
    assert owner.webhook(hook.id).deliveries == {"succeeded": 8}

    # Paused: nothing is queued; events chosen: only those.
    owner.update_webhook(hook.id, active=False)
    owner.set_alias("lab/head", "stable", 1)  # not a move: no event at all
    owner.delete_alias("lab/head", "stable")
    owner.update_webhook(hook.id, active=True, events=["version.yanked"])
    owner.set_alias("lab/head", "beta", 1)
    owner.yank(head, "broken")
    _wait(lambda: receiver.events().count("version.yanked") == 3)
    assert receiver.events().count("alias.moved") == 1

    # A redelivery keeps the id; a pending one is refused.
    last = owner.webhook_deliveries(hook.id, limit=1)[0]
    again = owner.redeliver_webhook(hook.id, last.id)
    assert again.uuid == last.uuid and again.status == "pending"
    _wait(lambda: len(receiver.received) == 10)
    assert receiver.received[-1][0]["x-partsbin-delivery"] == last.uuid
    owner.delete_webhook(hook.id)
    with pytest.raises(WebhookNotFound):
        owner.webhook(hook.id)


def test_a_receiver_that_is_down_gets_the_delivery_when_it_comes_back(make_registry, client_for, tmp_path):
    receiver = Receiver()
    live = make_registry(webhook_max_attempts=20, **FAST)
    admin = client_for(live, live.token("admin"))  # an admin may subscribe a loopback receiver
    hook = admin.create_webhook(receiver.url, events=["component.published"])  # every namespace
    assert hook.namespace is None
    ping = _wait(lambda: (d := admin.webhook_deliveries(hook.id)) and d[0].attempts >= 2 and d[0])
    assert ping.status == "pending" and ping.response_status is None
    with pytest.raises(Conflict, match="still pending"):
        admin.redeliver_webhook(hook.id, ping.id)
    assert all("ConnectError" in a["error"] for a in ping.history), ping.history

    reg = client_for(live, live.token("publish", ["lab"]))
    ext, head = _push_pair(reg, tmp_path)
    receiver.answer = 503
    receiver.start()
    try:
        # Answered 503, then fixed: retried with backoff until it succeeds.
        _wait(lambda: receiver.events().count("component.published") >= 2)
        receiver.answer = 200
        done = _wait(
            lambda: (d := admin.webhook_deliveries(hook.id)) and all(x.status == "succeeded" for x in d) and d,
            timeout=30,
        )
    finally:
        receiver.stop()
    published = [d for d in done if d.event == "component.published"]
    assert [d.payload["data"]["component"]["ref"] for d in published] == [head, ext]
    for d in done:
        statuses = [a["status"] for a in d.history]
        assert statuses[-1] == 200 and d.attempts == len(statuses) >= 2, d.history
        gaps = [b - a for a, b in zip(_times(d.history), _times(d.history)[1:], strict=False)]
        assert all(g >= 0.25 for g in gaps), gaps  # backoff, not a busy loop
    assert any(a["status"] == 503 and "answered 503" in a["error"] for d in done for a in d.history)


def _times(history: list[dict[str, Any]]) -> list[float]:
    from datetime import datetime

    return [datetime.fromisoformat(a["at"].replace("Z", "+00:00")).timestamp() for a in history]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_out_of_attempts_a_delivery_fails_and_can_be_sent_again(database, make_registry, client_for, request):
    receiver = Receiver()
    db = {"database_url": request.getfixturevalue("postgres_url")} if database == "postgresql" else {}
    # Two registry processes' dispatchers share the deliveries: each attempt is made once.
    live = make_registry(webhook_max_attempts=2, **db, **FAST)
    if db:
        make_registry(webhook_max_attempts=2, **db, **FAST)
    admin = client_for(live, live.token("admin"))
    hook = admin.create_webhook(receiver.url)
    failed = _wait(lambda: (d := admin.webhook_deliveries(hook.id)) and d[0].status == "failed" and d[0])
    assert failed.attempts == 2 and len(failed.history) == 2
    receiver.start()
    try:
        admin.redeliver_webhook(hook.id, failed.id)
        receiver.wait_for("ping")
    finally:
        receiver.stop()
    ok = _wait(lambda: (d := admin.webhook_deliveries(hook.id)[0]).status == "succeeded" and d)
    assert [a["status"] for a in ok.history] == [None, None, 204]
    time.sleep(0.5)
    assert receiver.events() == ["ping"]


def test_who_may_subscribe_and_where(make_registry, client_for, receiver):
    live = make_registry(**FAST)
    owner = client_for(live, live.token("publish", ["lab"], owner=True))
    other_owner = client_for(live, live.token("publish", ["zoo"], owner=True))
    publisher = client_for(live, live.token("publish", ["lab"]))
    anonymous = client_for(live)

    # A namespace owner may not aim the registry at its own network (SSRF).
    for url in (receiver.url, "http://localhost:9/x", "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/"):
        with pytest.raises(RegistryError, match="private, loopback or link-local") as err:
            owner.create_webhook(url, namespace="lab")
        assert "PARTSBIN_WEBHOOK_ALLOW_PRIVATE" in str(err.value)
    for url, why in (
        ("ftp://example.org/x", "http:// or https://"),
        ("http://user:pw@example.org/", "user or password"),
        ("http://" + "a" * 3000, "at most 2048"),
    ):
        with pytest.raises(RegistryError, match=why):
            owner.create_webhook(url, namespace="lab")
    with pytest.raises(RegistryError, match="unknown event|component.published"):
        owner.create_webhook("https://example.org/x", namespace="lab", events=["everything"])
    with pytest.raises(Unauthorized, match="only an admin may subscribe to every namespace"):
        owner.create_webhook("https://example.org/x")
    with pytest.raises(Unauthorized, match="owner of namespace 'lab'"):
        publisher.create_webhook("https://example.org/x", namespace="lab")
    with pytest.raises(Unauthorized, match="needs a token"):
        anonymous.create_webhook("https://example.org/x", namespace="lab")

    admin = client_for(live, live.token("admin"))
    hook = admin.create_webhook(receiver.url, namespace="lab")
    receiver.wait_for("ping")
    # The owner of lab manages it; others do not even see it.
    assert [h.id for h in owner.webhooks()] == [hook.id] and owner.webhooks()[0].secret is None
    assert other_owner.webhooks() == [] and publisher.webhooks() == []
    for who in (other_owner, publisher):
        with pytest.raises(WebhookNotFound):
            who.webhook(hook.id)
        with pytest.raises(WebhookNotFound):
            who.delete_webhook(hook.id)
    assert owner.ping_webhook(hook.id).event == "ping"

    # The number of subscriptions is bounded per namespace.
    small = make_registry(max_webhooks_per_namespace=1, **FAST)
    small_admin = client_for(small, small.token("admin"))
    small_admin.create_webhook(receiver.url, namespace="lab")
    with pytest.raises(RegistryError, match="already has 1 subscriptions"):
        small_admin.create_webhook(receiver.url, namespace="lab")
    # The schema refuses what the route would: unknown fields, short secrets.
    r = httpx.post(
        f"{live.url}/webhooks",
        json={"url": receiver.url, "secret": "short"},
        headers={"Authorization": f"Bearer {live.token('admin')}"},
    )
    assert r.status_code == 422 and "secret" in r.text


def test_the_schema_names_every_event():
    import typing

    from partsbin.registry.api.schemas import WebhookEvent
    from partsbin.registry.webhooks.events import EVENTS

    assert set(typing.get_args(WebhookEvent)) == set(EVENTS)


def test_the_cli_adds_lists_shows_deliveries_and_removes(make_registry, receiver):
    from tests.client.test_cli import cli, short

    live = make_registry(**FAST)
    env = {"PARTSBIN_URL": live.url, "PARTSBIN_TOKEN": live.token("admin")}
    added = cli("webhooks", "add", receiver.url, "-n", "lab", "-e", "job.finished", "--json", env=env)
    assert added.returncode == 0, added.stderr
    hook = json.loads(added.stdout)
    assert hook["events"] == ["job.finished"] and len(hook["secret"]) >= 32
    receiver.wait_for("ping")
    listed = cli("webhooks", "ls", env=env)
    assert listed.returncode == 0 and receiver.url in listed.stdout and "job.finished" in listed.stdout
    shown = _wait(
        lambda: (d := cli("webhooks", "deliveries", str(hook["id"]), env=env)) and "succeeded" in d.stdout and d
    )
    assert "ping" in shown.stdout
    assert cli("webhooks", "rm", str(hook["id"]), env=env).returncode == 0
    missing = cli("webhooks", "rm", str(hook["id"]), env=env)
    assert missing.returncode == 1 and "no webhook with id" in short(missing)
    refused = cli("webhooks", "add", "ftp://x", "-n", "lab", env=env)
    assert refused.returncode == 1 and "http:// or https://" in short(refused)
