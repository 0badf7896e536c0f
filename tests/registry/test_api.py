"""The registry API over real HTTP, on the embedded default (SQLite and a local folder)."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from partsbin.parts.card import CARD_METADATA_KEY
from partsbin.parts.safetensors_format import save_state_dict
from tests.helpers import aux_rp, extractor_card, head_card, network, raw_safetensors, write_component


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _upload(http: httpx.Client, token: str | None, data: bytes, card: dict | str | None = None) -> httpx.Response:
    form = {}
    if card is not None:
        form["card"] = card if isinstance(card, str) else json.dumps(card)
    return http.post(
        "/components",
        files={"file": ("c.safetensors", data, "application/octet-stream")},
        data=form,
        headers=_auth(token) if token else {},
    )


@pytest.fixture
def admin(live) -> str:
    return live.token("admin")


@pytest.fixture
def published(live, http, admin, tmp_path):
    """An aux RP head, and an extractor and head trained against it."""
    aux, aux_card = aux_rp()
    r = _upload(http, admin, write_component(tmp_path / "aux.st", aux, aux_card).read_bytes())
    assert r.status_code == 201, r.text
    anchor = r.json()["digest"]
    net = network(1)
    ext = _upload(
        http,
        admin,
        write_component(tmp_path / "e.st", net.extractor(), extractor_card("lab/ext", [anchor])).read_bytes(),
    )
    head = _upload(
        http, admin, write_component(tmp_path / "h.st", net.head(), head_card("lab/head", [anchor])).read_bytes()
    )
    assert ext.status_code == 201 and head.status_code == 201, (ext.text, head.text)
    return {"anchor": anchor, "aux": r.json(), "ext": ext.json(), "head": head.json(), "net": net}


def test_publish_assigns_versions_and_is_idempotent(live, http, admin, tmp_path):
    net = network(0)
    first = write_component(tmp_path / "a.st", net.extractor(), extractor_card("lab/e")).read_bytes()
    r1 = _upload(http, admin, first)
    assert r1.status_code == 201 and r1.json()["version"] == 1
    assert r1.json()["digest"] == "sha256:" + hashlib.sha256(first).hexdigest()
    assert r1.json()["size"] == len(first)
    # Where the publish spent its time, step by step (W3C Server-Timing).
    steps = [m.split(";")[0].strip() for m in r1.headers["server-timing"].split(",")]
    assert steps == ["receive", "check", "store", "record"]
    again = _upload(http, admin, first)
    assert again.status_code == 200 and again.json()["version"] == 1
    second = write_component(tmp_path / "b.st", network(5).extractor(), extractor_card("lab/e")).read_bytes()
    r2 = _upload(http, admin, second)
    assert r2.status_code == 201 and r2.json()["version"] == 2
    assert http.get("/components/lab/e").json()["version"] == 2
    assert http.get("/components/lab/e/versions/1").json()["digest"] == r1.json()["digest"]
    assert [v["version"] for v in http.get("/components/lab/e/versions").json()] == [1, 2]
    assert live.row_count() == 2


def test_card_in_form_only_and_agreement(http, admin, tmp_path):
    net = network(0)
    card = extractor_card("lab/plain")
    plain = write_component(tmp_path / "p.st", net.extractor(), card, embed=False).read_bytes()
    r = _upload(http, admin, plain, card.model_dump(mode="json"))
    assert r.status_code == 201, r.text
    embedded = write_component(tmp_path / "e.st", net.extractor(), card).read_bytes()
    other = extractor_card("lab/other")
    r = _upload(http, admin, embedded, other.model_dump(mode="json"))
    assert r.status_code == 422 and "disagree on: name" in r.json()["detail"]


def test_lookups_file_etag_and_range(http, published):
    ext = published["ext"]
    hex_ = ext["digest"].removeprefix("sha256:")
    for path in (
        "/components/lab/ext",
        "/components/lab/ext/versions/1",
        f"/components/by-digest/{hex_}",
        f"/components/by-digest/sha256:{hex_}",
    ):
        assert http.get(path).json()["ref"] == "lab/ext@1", path
    full = http.get("/components/lab/ext/file")
    assert full.status_code == 200
    assert hashlib.sha256(full.content).hexdigest() == hex_
    assert full.headers["etag"] == f'"{hex_}"'
    part = http.get("/components/lab/ext/versions/1/file", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == full.content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(full.content)}"
    tail = http.get(f"/components/by-digest/{hex_}/file", headers={"Range": "bytes=-5"})
    assert tail.content == full.content[-5:]
    assert http.get("/components/lab/ext/file", headers={"If-None-Match": f'"{hex_}"'}).status_code == 304
    # HEAD answers GET's headers without the body, on every file route.
    for path in (
        "/components/lab/ext/file",
        "/components/lab/ext/versions/1/file",
        f"/components/by-digest/{hex_}/file",
    ):
        head = http.head(path)
        assert head.status_code == 200 and head.content == b"", path
        for name in ("etag", "content-length", "accept-ranges"):
            assert head.headers[name] == full.headers[name], (path, name)
    # The embedded card makes the file self-describing.
    n = int.from_bytes(full.content[:8], "little")
    assert json.loads(json.loads(full.content[8 : 8 + n])["__metadata__"][CARD_METADATA_KEY])["name"] == "lab/ext"


def test_aliases_and_yank(live, http, published, tmp_path):
    admin = live.token("admin")
    net = network(7)
    r = _upload(
        http,
        admin,
        write_component(
            tmp_path / "e2.st", net.extractor(), extractor_card("lab/ext", [published["anchor"]])
        ).read_bytes(),
    )
    assert r.json()["version"] == 2
    assert http.put("/components/lab/ext/aliases/stable", json={"version": 1}, headers=_auth(admin)).status_code == 200
    assert http.get("/components/lab/ext/aliases/stable").json()["version"] == 1
    assert http.get("/components/lab/ext/aliases/stable/file").status_code == 200
    assert http.head("/components/lab/ext/aliases/stable/file").headers["etag"].startswith('"')
    # Yank v2: hidden from latest and lists, still downloadable by exact version.
    y = http.post(
        "/components/lab/ext/versions/2/yank", json={"reason": "trained on the test split"}, headers=_auth(admin)
    )
    assert y.status_code == 200 and y.json()["yanked"] and y.json()["yank_reason"] == "trained on the test split"
    assert http.get("/components/lab/ext").json()["version"] == 1
    assert all(c["ref"] != "lab/ext@2" for c in http.get("/components").json()["items"])
    assert http.get("/components/lab/ext/versions/2").json()["yanked"] is True
    assert http.get("/components/lab/ext/versions/2/file").status_code == 200
    assert any(
        c["ref"] == "lab/ext@2" for c in http.get("/components", params={"include_yanked": True}).json()["items"]
    )
    # An alias cannot be moved onto a yanked version.
    assert http.put("/components/lab/ext/aliases/stable", json={"version": 2}, headers=_auth(admin)).status_code == 404
    assert http.delete("/components/lab/ext/versions/2/yank", headers=_auth(admin)).json()["yanked"] is False
    assert http.get("/components/lab/ext").json()["version"] == 2
    assert http.delete("/components/lab/ext/aliases/stable", headers=_auth(admin)).status_code == 204
    assert http.get("/components/lab/ext/aliases/stable").json()["code"] == "not_found"


def test_list_filters_and_pagination(http, published):
    def refs(**params):
        out, cursor = [], None
        while True:
            page = http.get(
                "/components", params={**params, "limit": 1, **({"cursor": cursor} if cursor else {})}
            ).json()
            out += [c["ref"] for c in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                return out

    assert refs() == ["lab/rp@1", "lab/ext@1", "lab/head@1"]
    assert refs(role="extractor") == ["lab/ext@1"]
    assert refs(role="head", arch="resnet_cifar") == ["lab/head@1"]
    assert refs(group=published["anchor"]) == ["lab/rp@1", "lab/ext@1", "lab/head@1"]
    assert refs(prefix="lab/e") == ["lab/ext@1"]
    assert refs(prefix="la") == ["lab/rp@1", "lab/ext@1", "lab/head@1"]
    assert refs(namespace="other") == []
    assert refs(arch="wide_resnet") == []


def test_compatible_both_ways_and_groups(http, published, tmp_path, live):
    r = http.get("/compatible", params={"head": "lab/head"})
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["component"]["ref"] for i in items] == ["lab/ext@1"]
    reason = items[0]["reasons"][0]
    assert (
        reason["kind"] == "declared" and reason["anchor"] == published["anchor"] and reason["anchor_ref"] == "lab/rp@1"
    )
    assert items[0]["status"] == "declared, unmeasured"
    heads = http.get("/compatible", params={"extractor": "lab/ext@1"}).json()["items"]
    assert sorted((i["component"]["ref"], i["role"]) for i in heads) == [("lab/head@1", "head"), ("lab/rp@1", "aux-rp")]
    # The aux head itself answers ?head= too.
    assert [i["component"]["ref"] for i in http.get("/compatible", params={"head": "lab/rp"}).json()["items"]] == [
        "lab/ext@1"
    ]
    # Refs in query strings by digest work (URL-encoded by httpx).
    assert http.get("/compatible", params={"head": published["head"]["digest"]}).json()["query"] == "lab/head@1"
    # Same group, different feature interface: not listed.
    admin = live.token("admin")
    wide = network(3, width=8)
    # width 8 gives 16 channels at the junction, which the 8-channel anchor does not take.
    bad = _upload(
        http,
        admin,
        write_component(
            tmp_path / "w.st", wide.extractor(), extractor_card("lab/wide", [published["anchor"]], width=8)
        ).read_bytes(),
    )
    assert bad.status_code == 422 and "does not meet anchor" in bad.json()["detail"]
    groups = http.get("/groups").json()["items"]
    assert (
        len(groups) == 1
        and groups[0]["id"] == published["anchor"].removeprefix("sha256:")
        and groups[0]["members"] == 3
    )
    detail = http.get(f"/groups/{groups[0]['id']}").json()
    assert detail["anchor"]["ref"] == "lab/rp@1" and {c["ref"] for c in detail["member_items"]} == {
        "lab/rp@1",
        "lab/ext@1",
        "lab/head@1",
    }
    assert http.get("/compatible", params={"head": "lab/ext"}).json()["code"] == "invalid_request"
    assert http.get("/compatible").status_code == 422


def test_bad_input_is_refused_and_nothing_is_stored(live, http, admin, published, tmp_path):
    publisher = live.token("publish", ["lab"])
    reader = live.token("read")
    rows, blobs = live.row_count(), live.blob_count()
    listed = http.get("/components").json()["items"]
    net = network(9)
    good = write_component(tmp_path / "g.st", net.extractor(), extractor_card("lab/new")).read_bytes()

    def with_card(name: str, **kw):
        c = extractor_card("lab/new", **kw)
        return c.model_copy(update={"name": name}).model_dump(mode="json") if name else c.model_dump(mode="json")

    wrong_shape = write_component(
        tmp_path / "ws.st", network(0, num_classes=5).head(), head_card("lab/new")
    ).read_bytes()
    wrong_names = tmp_path / "wn.st"
    sd = {("renamed." + k if k.startswith("stem") else k): v for k, v in net.extractor().state_dict().items()}
    save_state_dict(sd, wrong_names, {CARD_METADATA_KEY: extractor_card("lab/new").embedded_json()})
    missing_anchor = write_component(
        tmp_path / "ma.st", net.extractor(), extractor_card("lab/new", ["sha256:" + "0" * 64])
    ).read_bytes()
    plain = write_component(tmp_path / "pl.st", net.extractor(), extractor_card("lab/new"), embed=False).read_bytes()

    cases = [
        ("truncated file", admin, good[: len(good) // 2], None, 422, "truncated"),
        ("header past the end", admin, (10**6).to_bytes(8, "little") + good[8:200], None, 422, "runs past the end"),
        (
            "unknown dtype",
            admin,
            raw_safetensors({"w": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
            None,
            422,
            "unknown dtype",
        ),
        (
            "overlapping offsets",
            admin,
            raw_safetensors(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                },
                b"\0" * 8,
            ),
            None,
            422,
            "overlap",
        ),
        (
            "out-of-range offsets",
            admin,
            raw_safetensors({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
            None,
            422,
            "outside",
        ),
        ("shapes differ from arch", admin, wrong_shape, None, 422, "fc.weight' has shape [5, 16]"),
        ("names differ from arch", admin, wrong_names.read_bytes(), None, 422, "unexpected 'renamed.stem"),
        ("missing aux head", admin, missing_anchor, None, 422, "not in this registry"),
        ("name with slash", admin, plain, with_card("lab/new/x"), 422, "namespace/name"),
        ("name with ..", admin, plain, with_card("lab/.."), 422, "'..'"),
        ("name with control character", admin, plain, with_card("lab/new\x07"), 422, "control characters"),
        ("no card at all", admin, plain, None, 422, "no card"),
        ("card is not JSON", admin, plain, "{nope", 422, "not valid JSON"),
        ("no token", None, good, None, 401, "needs a token"),
        ("wrong token", "pb_wrong", good, None, 401, "unknown, revoked or expired"),
        ("read-only token", reader, good, None, 403, "scope 'read'"),
        ("publish into another namespace", live.token("publish", ["elsewhere"]), good, None, 403, "namespace 'lab'"),
    ]
    for label, token, data, card, status, message in cases:
        r = _upload(http, token, data, card)
        assert r.status_code == status, (label, r.status_code, r.text)
        body = r.json()
        assert message in body["detail"], (label, body)
        assert r.headers["x-error-code"] == body["code"], label
    assert live.row_count() == rows and live.blob_count() == blobs
    assert http.get("/components").json()["items"] == listed
    assert not [p for p in live.settings.staging_dir.rglob("*") if p.is_file()], "staged uploads are removed"

    # A publish token may create but never yank or move aliases.
    r = http.post("/components/lab/ext/versions/1/yank", json={"reason": "x"}, headers=_auth(publisher))
    assert r.status_code == 403 and "admin token or an owner" in r.json()["detail"]
    assert (
        http.put("/components/lab/ext/aliases/stable", json={"version": 1}, headers=_auth(publisher)).status_code == 403
    )
    assert http.post("/components/lab/ext/versions/1/yank", json={"reason": "x"}).status_code == 401
    # An owner of the namespace may.
    owner = live.token("publish", ["lab"], owner=True)
    assert (
        http.post("/components/lab/ext/versions/1/yank", json={"reason": "x"}, headers=_auth(owner)).status_code == 200
    )
    assert _upload(http, publisher, good).status_code == 201


def test_upload_over_the_limit_answers_413(make_registry, tmp_path):
    live = make_registry(max_upload_bytes=5_000)
    admin = live.token("admin")
    big = write_component(tmp_path / "big.st", network(0).head(), head_card("lab/big")).read_bytes()
    assert len(big) > 5_000
    with httpx.Client(base_url=live.url) as http:
        r = _upload(http, admin, big)
        assert r.status_code == 413 and "PARTSBIN_MAX_UPLOAD_BYTES" in r.json()["detail"]

        # Without a Content-Length (chunked), the limit is enforced while streaming.
        def chunks():
            boundary = b"XyZ"
            yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="c"\r\n\r\n'
            for i in range(0, len(big), 8192):
                yield big[i : i + 8192]
            yield b"\r\n--" + boundary + b"--\r\n"

        r = http.post(
            "/components",
            content=chunks(),
            headers={**_auth(admin), "Content-Type": "multipart/form-data; boundary=XyZ"},
        )
        assert r.status_code == 413
    assert live.row_count() == 0 and live.blob_count() == 0


def test_anonymous_read_can_be_switched_off(make_registry):
    live = make_registry(anonymous_read=False)
    with httpx.Client(base_url=live.url) as http:
        r = http.get("/components")
        assert r.status_code == 401 and r.headers["x-error-code"] == "unauthorized"
        assert http.get("/components", headers=_auth(live.token("read"))).status_code == 200


def test_storage_failure_answers_503_and_leaves_no_row(make_registry, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the blob folder should be")
    live = make_registry(storage_url=blocker.as_uri())
    with httpx.Client(base_url=live.url) as http:
        aux, card = aux_rp()
        r = _upload(http, live.token("admin"), write_component(tmp_path / "a.st", aux, card).read_bytes())
        assert r.status_code == 503 and r.json()["code"] == "storage_unavailable"
        assert http.get("/components").json()["items"] == []
    assert live.row_count() == 0


def test_tokens_over_http_and_expiry(live, http, admin):
    r = http.post("/tokens", json={"scope": "publish", "namespaces": ["lab"], "name": "ci"}, headers=_auth(admin))
    assert r.status_code == 201
    created = r.json()
    assert created["token"].startswith("pb_")
    assert http.get("/tokens", headers=_auth(created["token"])).status_code == 403
    assert any(t["id"] == created["id"] for t in http.get("/tokens", headers=_auth(admin)).json())
    assert http.delete(f"/tokens/{created['id']}", headers=_auth(admin)).json()["revoked"] is True
    assert http.post("/components", headers=_auth(created["token"])).status_code == 401

    from datetime import timedelta

    from partsbin.registry.crud.tokens import create_token

    with live.session() as session:
        _, expired = create_token(session=session, scope="admin", expires_in=timedelta(seconds=-1))
        session.commit()
    assert http.get("/tokens", headers=_auth(expired)).json()["detail"] == "the token is unknown, revoked or expired"


def test_invalid_paths_and_health(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/components/Lab/x").json()["code"] == "invalid_name"
    assert http.get("/components/lab/x").status_code == 404
    assert http.get("/components/by-digest/abc").json()["code"] == "invalid_name"
    assert http.get("/groups/" + "0" * 64).status_code == 404
    assert "/components" in http.get("/openapi.json").json()["paths"]
    assert http.get("/docs").status_code == 200


def test_api_description_follows_anonymous_read_and_docs_work_offline(make_registry):
    live = make_registry(anonymous_read=False)
    token = live.token("read")
    with httpx.Client(base_url=live.url, follow_redirects=False) as c:
        assert c.get("/openapi.json").status_code == 401
        r = c.get("/docs")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/docs"
        schema = c.get("/openapi.json", headers=_auth(token)).json()
        # The token scheme is declared, and every guarded operation names it.
        assert schema["components"]["securitySchemes"]["token"] == {
            "type": "http",
            "scheme": "bearer",
            "description": schema["components"]["securitySchemes"]["token"]["description"],
        }
        # Optional where it is optional: {} means "no credentials also accepted".
        assert schema["paths"]["/components"]["get"]["security"] == [{"token": []}, {}]
        assert "security" not in schema["paths"]["/healthz"]["get"]
        # Swagger UI's files come from this registry, not from a CDN.
        page = c.get("/docs", headers=_auth(token)).text
        assert "cdn." not in page and "/docs/assets/swagger-ui-bundle.js" in page
        js = c.get("/docs/assets/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 500_000
        assert c.get("/docs/assets/swagger-ui.css").status_code == 200
        # A browser signed in to the pages reads the description with its cookie.
        c.post("/ui/login", data={"token": token})
        assert c.get("/docs").status_code == 200 and c.get("/openapi.json").status_code == 200


def test_concurrent_identical_uploads_make_one_version(live, admin, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    data = write_component(tmp_path / "same.st", network(0).extractor(), extractor_card("lab/twice")).read_bytes()
    with httpx.Client(base_url=live.url, timeout=60) as client, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _upload(client, admin, data), range(4)))
    assert sorted(r.status_code for r in results) == [200, 200, 200, 201], [r.text for r in results]
    assert {r.json()["version"] for r in results} == {1}
    assert live.row_count() == 1
