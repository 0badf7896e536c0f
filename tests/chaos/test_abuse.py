"""Hostile and broken input: every case is a 4xx that says what is wrong (never a 5xx),
and nothing stored changes: rows, blobs, aliases, yanks and the staging area."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import httpx
import pytest

from partsbin.parts.card import CARD_METADATA_KEY
from partsbin.parts.safetensors_format import save_state_dict
from tests.helpers import aux_rp, extractor_card, network, raw_safetensors, write_component


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(live, tmp_path):  # type: ignore[no-untyped-def]
    """A registry holding an aux head and an extractor with an alias, and its tokens."""
    admin = live.token("admin")
    aux, card = aux_rp()
    with httpx.Client(base_url=live.url) as http:
        r = http.post(
            "/components", files={"file": write_component(tmp_path / "a", aux, card).read_bytes()}, headers=_auth(admin)
        )
        anchor = r.json()["digest"]
        e = write_component(tmp_path / "e", network(1).extractor(), extractor_card("lab/ext", [anchor])).read_bytes()
        assert http.post("/components", files={"file": e}, headers=_auth(admin)).status_code == 201
        assert http.put("/components/lab/ext/aliases/stable", json={"version": 1}, headers=_auth(admin)).is_success
    return {"admin": admin, "anchor": anchor}


class Unchanged:
    """Everything the registry stores, taken before the abuse and compared after."""

    def __init__(self, live) -> None:  # type: ignore[no-untyped-def]
        self.live = live
        self.before = self.snapshot()

    def snapshot(self) -> tuple:  # type: ignore[type-arg]
        with httpx.Client(base_url=self.live.url) as http:
            listed = http.get("/components", params={"include_yanked": True}).json()["items"]
            alias = http.get("/components/lab/ext/aliases/stable").json()
        staged = [p for p in self.live.settings.staging_dir.rglob("*") if p.is_file()]
        return self.live.row_count(), self.live.blob_count(), listed, alias, staged

    def check(self) -> None:
        assert self.snapshot() == self.before


def _refused(r: httpx.Response, status: int | tuple[int, ...], *fragments: str) -> None:
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    body = r.json()
    assert body["code"] == r.headers["x-error-code"] and body["request_id"] == r.headers["x-request-id"]
    for fragment in fragments:
        assert fragment in body["detail"], (fragment, body)


def _raw_request(url: str, request: bytes) -> tuple[int, bytes]:
    """Bytes exactly as written (no client normalises the path or the headers)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


TRAVERSALS = ["..", "%2e%2e", "%2E%2E", "a%2fb", "a%5cb", "a\\b", "%00", "a%00b", "x" * 10_000, "Lab", "a..b"]


def test_path_traversal_in_every_name_and_ref_field(live, world):
    state = Unchanged(live)
    admin = world["admin"]
    for bad in TRAVERSALS:
        for path in (
            f"/components/{bad}/ext",
            f"/components/lab/{bad}",
            f"/components/lab/{bad}/file",
            f"/components/lab/{bad}/versions",
            f"/components/lab/ext/aliases/{bad}",
            f"/components/lab/ext/aliases/{bad}/file",
            f"/components/by-digest/{bad}",
        ):
            status, body = _raw_request(
                live.url, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
            assert 400 <= status < 500, (path[:80], status, body[:300])
        # Writes through every name field, with an admin token.
        status, _ = _raw_request(
            live.url,
            f"PUT /components/lab/ext/aliases/{bad} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Authorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n"
            '{"version": 1}'.encode(),
        )
        assert 400 <= status < 500, (bad[:40], status)
    with httpx.Client(base_url=live.url) as http:
        for bad in ["../etc/passwd", "lab/..", "lab/ext\\..", "lab/e\x00", "lab/" + "x" * 10_000, "sha256:../../x"]:
            _refused(http.get("/compatible", params={"head": bad}), 422)
            _refused(http.get("/evaluations", params={"extractor": bad}), 422)
            _refused(
                http.post(
                    "/evaluations",
                    json={
                        "extractor": bad,
                        "head": "lab/rp",
                        "dataset": "d",
                        "value": 0.5,
                        "samples": 10,
                        "bn_mode": "batch",
                    },
                    headers=_auth(admin),
                ),
                422,
            )
            _refused(http.post("/tokens", json={"scope": "publish", "namespaces": [bad]}, headers=_auth(admin)), 422)
            spec = {"name": "x", "namespace": bad, "tasks": [{"name": "a", "pair": "digits", "pair_task": "a"}]}
            _refused(http.post("/jobs", json={"spec": spec}, headers=_auth(admin)), (403, 422))
    state.check()


def test_cards_too_large_or_too_deep_and_bad_multipart(live, world, tmp_path):
    state = Unchanged(live)
    admin = world["admin"]
    net = network(9)
    card = extractor_card("lab/new")
    plain = write_component(tmp_path / "p", net.extractor(), card, embed=False).read_bytes()
    deep = "[" * 10_000 + "]" * 10_000
    huge = json.dumps({**card.model_dump(mode="json"), "description": "x" * 10_000_000})
    with httpx.Client(base_url=live.url, timeout=120) as http:
        post = lambda files, **kw: http.post("/components", files=files, headers=_auth(admin), **kw)  # noqa: E731
        _refused(post({"file": plain}, data={"card": huge}), 422, "larger than")
        _refused(post({"file": plain}, data={"card": deep}), 422, "nested more than")
        _refused(
            post({"file": plain}, data={"card": json.dumps({"metrics": json.loads("[" * 500 + "]" * 500)})}),
            422,
            "nested",
        )
        # The same, embedded in the file's header; and a header nested 10,000 levels deep.
        for text, fragment in ((huge, "larger than"), (deep, "nested more than")):
            f = tmp_path / "embedded"
            save_state_dict(net.extractor().state_dict(), f, {CARD_METADATA_KEY: text})
            _refused(post({"file": f.read_bytes()}), 422, fragment)
        _refused(post({"file": raw_safetensors({"a": json.loads("[" * 900 + "]" * 900)}, b"")}), 422, "nested")
        raw = b"\x00" * 8
        header = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
        _refused(post({"file": len(header).to_bytes(8, "little") + header + raw[:4]}), 422, "'w' appears twice")

        def multipart(boundary: str, body: bytes) -> httpx.Response:
            return http.post(
                "/components",
                content=body,
                headers={**_auth(admin), "Content-Type": f"multipart/form-data; boundary={boundary}"},
            )

        long_boundary = "b" * 300
        _refused(multipart(long_boundary, f"--{long_boundary}\r\n".encode()), 422, "multipart")
        b = "bnd"
        _refused(multipart(b, f"--{b}\r\nX-Long: {'a' * 100_000}\r\n\r\nx\r\n--{b}--\r\n".encode()), 422, "header")
        _refused(
            multipart(b, f'--{b}\r\nContent-Disposition: form-data; na\rme="file"\r\n\r\nx\r\n--{b}--\r\n'.encode()),
            422,
        )
        parts = "".join(f'--{b}\r\nContent-Disposition: form-data; name="card"\r\n\r\n{{}}\r\n' for _ in range(1000))
        _refused(multipart(b, (parts + f"--{b}--\r\n").encode()), 422, "given twice")
        _refused(multipart(b, b"no boundary anywhere"), 422)
    state.check()


def test_body_over_the_limit_with_and_without_content_length(make_registry, tmp_path):
    live = make_registry(max_upload_bytes=20_000)
    admin = live.token("admin")
    state = Unchanged.__new__(Unchanged)
    state.live = live
    before = (live.row_count(), live.blob_count())
    big = b"\x00" * 200_000
    with httpx.Client(base_url=live.url, timeout=60) as http:
        _refused(http.post("/components", files={"file": big}, headers=_auth(admin)), 413, "PARTSBIN_MAX_UPLOAD_BYTES")

        def chunks():  # no Content-Length: the limit is enforced while the body streams
            yield b'--q\r\nContent-Disposition: form-data; name="file"; filename="c"\r\n\r\n'
            for i in range(0, len(big), 8192):
                yield big[i : i + 8192]
            yield b"\r\n--q--\r\n"

        r = http.post(
            "/components", content=chunks(), headers={**_auth(admin), "Content-Type": "multipart/form-data; boundary=q"}
        )
        _refused(r, 413)
        # A declared length far over the limit is refused before anything is read.
        status, _ = _raw_request(
            live.url,
            b"POST /components HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer "
            + admin.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=q\r\nContent-Length: 99999999999999999999\r\n\r\n",
        )
        assert status in (400, 413)  # the HTTP server itself may refuse a length that large
    assert (live.row_count(), live.blob_count()) == before
    assert not [p for p in live.settings.staging_dir.rglob("*") if p.is_file()]


def test_ranges_integers_and_digits(live, world):
    state = Unchanged(live)
    with httpx.Client(base_url=live.url) as http:
        full = http.get("/components/lab/ext/file").content
        size = len(full)
        for header, status in [
            ("bytes=abc", 200),
            ("bytes=\u00b2-", 200),  # a non-ASCII digit: ignored, as any malformed range
            ("bytes=0-1,3-4", 200),  # several ranges: the whole file
            ("bytes=" + ",".join(f"{i}-{i}" for i in range(2000)), 200),
            ("items=0-1", 200),
            ("bytes=" + "9" * 5000 + "-", 416),
            (f"bytes={size}-", 416),
            ("bytes=-0", 416),
            ("bytes=-", 416),
            ("bytes=5-2", 416),
            ("bytes=0-" + "9" * 5000, 206),
            ("bytes=-" + "9" * 5000, 206),
        ]:
            r = http.get("/components/lab/ext/file", headers={"Range": header.encode()})
            assert r.status_code == status, (header[:40], r.status_code, r.text[:200])
            if status == 200:
                assert r.content == full
            if status == 206:
                assert r.content == full
        big = "1208925819614629174706176"
        for path in (
            f"/components/lab/ext/versions/{big}",
            f"/components/lab/ext/versions/{big}/file",
            f"/jobs/{big}",
            f"/components?cursor={big}",
            f"/jobs?cursor={big}",
            f"/groups/{world['anchor'].removeprefix('sha256:')}?cursor={big}",
            "/components?cursor=\u00b2",
            "/jobs?cursor=\u00b2",
            "/compatible?head=lab/rp&cursor=d\u00b2",
            "/compatible?head=lab/rp&cursor=d" + big,
            f"/compatible?head=lab/ext@{big}",
            f"/compatible?head=lab/ext@{'9' * 5000}",
            f"/components/lab/ext/versions/{'9' * 5000}",
            f"/jobs/{'9' * 5000}",
            f"/components?cursor={'9' * 5000}",
            "/compatible?head=lab/ext@\u00b2",
            "/groups?cursor=\u00b2",
        ):
            _refused(http.get(path, headers=_auth(world["admin"])), (404, 422))
        for path in (f"/jobs/{big}/heartbeat", f"/jobs/{big}/complete", f"/jobs/{big}/fail", f"/jobs/{big}/release"):
            _refused(http.post(path, json={"lease_id": "x", "error": "e"}, headers=_auth(world["admin"])), (404, 422))
        _refused(
            http.put("/components/lab/ext/aliases/stable", json={"version": int(big)}, headers=_auth(world["admin"])),
            422,
        )
        _refused(
            http.post("/tokens", json={"scope": "read", "expires_in_days": 1e300}, headers=_auth(world["admin"])), 422
        )
        deep = {"details": json.loads("{" + '"a":{' * 200 + "}" * 201)}
        body = {
            "extractor": "lab/ext",
            "head": "lab/rp",
            "dataset": "d",
            "value": 0.5,
            "samples": 10,
            "bn_mode": "batch",
        }
        _refused(http.post("/evaluations", json={**body, **deep}, headers=_auth(world["admin"])), 422, "nested")
        _refused(http.post("/evaluations", json={**body, "samples": 2**40}, headers=_auth(world["admin"])), 422)
        r = http.post(
            "/evaluations",
            content=b'{"details": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            headers={**_auth(world["admin"]), "Content-Type": "application/json"},
        )
        _refused(r, (400, 422))
    state.check()


def test_tokens_in_the_query_expired_revoked_and_out_of_their_namespace(live, world, tmp_path):
    from partsbin.registry.crud.tokens import create_token, revoke_token

    state = Unchanged(live)
    admin = world["admin"]
    with live.session() as session:
        _, expired = create_token(session=session, scope="admin", expires_in=timedelta(seconds=-1))
        row, revoked = create_token(session=session, scope="admin")
        revoke_token(session=session, token_id=row.id)
        session.commit()
    other_ns = live.token("publish", ["elsewhere"])
    publisher = live.token("publish", ["lab"])  # may publish into lab, but is not its owner
    reader = live.token("read")
    data = write_component(tmp_path / "n", network(4).extractor(), extractor_card("lab/n")).read_bytes()
    with httpx.Client(base_url=live.url) as http:
        for params in ({"token": admin}, {"access_token": admin}, {"authorization": f"Bearer {admin}"}):
            _refused(http.post("/components", params=params, files={"file": data}), 401, "needs a token")
            _refused(http.post("/components/lab/ext/versions/1/yank", params=params, json={"reason": "x"}), 401)
        for token in (expired, revoked):
            _refused(http.post("/components", files={"file": data}, headers=_auth(token)), 401, "revoked or expired")
            _refused(http.get("/tokens", headers=_auth(token)), 401)
        _refused(http.post("/components", files={"file": data}, headers=_auth(other_ns)), 403, "namespace 'lab'")
        _refused(http.post("/components", files={"file": data}, headers=_auth(reader)), 403)
        for token, status in ((publisher, 403), (other_ns, 403), (reader, 403), (None, 401)):
            headers = _auth(token) if token else {}
            _refused(http.put("/components/lab/ext/aliases/stable", json={"version": 1}, headers=headers), status)
            _refused(http.delete("/components/lab/ext/aliases/stable", headers=headers), status)
            _refused(http.post("/components/lab/ext/versions/1/yank", json={"reason": "x"}, headers=headers), status)
            _refused(http.delete("/components/lab/ext/versions/1/yank", headers=headers), status)
        _refused(http.post("/tokens", json={"scope": "admin"}, headers=_auth(publisher)), 403)
        _refused(http.get("/tokens", headers={"Authorization": "Basic abc"}), 401, "malformed")
    state.check()
