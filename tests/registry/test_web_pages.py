"""The web pages and the API queries under them, over real HTTP (no browser): filters,
pagination, errors as pages, signing in, downloads. tests/registry/test_web_browser.py
drives the same pages in Chromium."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import httpx
import pytest

from partsbin.registry.config import Settings
from tests.conftest import LiveRegistry, serve_registry
from tests.helpers import extractor_card, network, write_component
from tests.registry.zoo import Zoo, build_zoo


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveRegistry, httpx.Client, Zoo]]:
    """One registry with the zoo for the tests that only read (building it takes a second)."""
    tmp = tmp_path_factory.mktemp("web")
    with serve_registry(Settings(data_dir=tmp / "data", database_url=None, storage_url=None)) as live:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            yield live, http, build_zoo(http, live.token("admin"), tmp)


@pytest.fixture
def http(shared) -> httpx.Client:
    return shared[1]


@pytest.fixture
def zoo(shared) -> Zoo:
    return shared[2]


def _names(html: str) -> list[str]:
    return re.findall(r'<a href="/ui/components/[^"]+">([a-z0-9./-]+@\d+)</a>', html)


def test_list_filters_by_tag_and_text_in_the_api_and_the_page(http, zoo):
    by_tag = http.get("/components", params={"tag": "task-b"}).json()["items"]
    assert sorted(c["name"] for c in by_tag) == ["lab/b-extractor", "lab/b-head"]
    # Text search covers names and descriptions, in any case.
    assert [c["name"] for c in http.get("/components", params={"q": "ADAPTED"}).json()["items"]] == [
        "lab/a-adapted-extractor"
    ]
    described = http.get("/components", params={"q": "unlabelled target"}).json()["items"]
    assert [c["name"] for c in described] == ["lab/a-adapted-extractor"]
    assert http.get("/components", params={"q": "100%_"}).json()["items"] == []  # LIKE wildcards are literal
    both = http.get("/components", params={"q": "head", "tag": "task-c", "role": "head"}).json()["items"]
    assert [c["name"] for c in both] == ["lab/c-head"]

    page = http.get("/", params={"tag": "task-b"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert re.fullmatch(r"page;dur=\d+\.\d", page.headers["server-timing"])
    assert _names(page.text) == ["lab/b-extractor@1", "lab/b-head@1"]
    assert _names(http.get("/", params={"q": "adapted", "role": "extractor"}).text) == ["lab/a-adapted-extractor@1"]
    assert _names(http.get("/", params={"group": zoo.anchor, "role": "head"}).text) == [
        "lab/a-head@1",
        "lab/b-head@1",
        "lab/c-head@1",
    ]
    assert "No components match these filters" in http.get("/", params={"tag": "nothing"}).text


def test_list_rows_show_role_arch_size_accuracy_and_age(http, zoo):
    html = http.get("/", params={"q": "lab/b-extractor"}).text
    row = html[html.index("lab/b-extractor@1") :]
    assert 'class="role role-extractor">extractor' in row
    assert "resnet_cifar" in row and f"{zoo.ext['b']['size'] / 1000:.1f} kB" in row
    assert "95.1%" in row and "just now" in row


def test_every_list_is_paginated(make_registry, tmp_path):
    live = make_registry(page_size=4)
    with httpx.Client(base_url=live.url) as http:
        zoo = build_zoo(http, live.token("admin"), tmp_path)
        seen, url = [], "/?tag=zoo"
        while url:
            html = http.get(url).text
            names = _names(html)
            assert len(names) <= 4
            seen += names
            nxt = re.search(r'<a href="([^"]+)" rel="next">', html)
            url = nxt.group(1).replace("&amp;", "&") if nxt else None
        assert len(seen) == len(set(seen)) == 7  # 3 extractors, 3 heads, the adapted one
        # The group's members page too (8 members: the aux head and the seven above).
        group = http.get(f"/ui/groups/{zoo.group}").text
        members = group[group.index('id="members"') :]
        assert len(_names(members)) == 4 and 'rel="next"' in members


def test_component_page_shows_card_versions_file_snippet_compatible_evaluations_lineage(http, zoo):
    html = http.get("/ui/components/lab/a-extractor").text
    assert "feature extractor of task a" in html and "Apache-2.0" in html
    assert "8 channels, spatial 8" in html  # the junction of a 16×16 input after stage 2
    assert f"sha256:{zoo.ext['a']['digest'][7:]}" in html
    assert 'href="/ui/components/lab/a-extractor/versions/1/file"' in html
    assert "registry.assemble(&#34;lab/a-extractor@1&#34;, &#34;lab/a-head@1&#34;)" in html  # best measured head first
    compatible = html[html.index('id="compatible"') : html.index('id="evaluations"')]
    rows = re.findall(r'<tr class="(measured|declared)">\s*<td><a href="[^"]+">([^<]+)</a>', compatible)
    # The three task heads are measured with a's extractor, best first; the aux head is only declared.
    assert rows == [
        ("measured", "lab/a-head@1"),
        ("measured", "lab/b-head@1"),
        ("measured", "lab/c-head@1"),
        ("declared", "lab/rp@1"),
    ]
    assert f'href="/ui/evaluations/{zoo.evaluations[("a", "b")]["id"]}">71.0%' in compatible
    evaluations = html[html.index('id="evaluations"') : html.index('id="lineage"')]
    assert evaluations.count("/ui/evaluations/") == 4  # with a's extractor: a×a, a×b twice, a×c
    lineage = html[html.index('id="lineage"') :]
    assert f'href="/ui/jobs/{zoo.job_id}">job {zoo.job_id}</a>' in lineage
    assert "lab/a-adapted-extractor@1</a> (adapted from)" in lineage
    assert "lab/a-head@1</a> (trained with extractor)" in lineage
    assert "<svg" in lineage


def test_component_page_shows_aliases_and_yanked_versions(http, zoo):
    html = http.get("/ui/components/lab/b-extractor").text  # the latest that is not yanked
    assert 'lab/b-extractor <span class="version">@1</span>' in html
    versions = html[html.index('id="versions"') : html.index('id="file"')]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", versions, re.S)[1:]
    assert len(rows) == 2
    assert '<span class="alias">stable</span>' in rows[0] and "available" in rows[0]
    assert 'title="trained on the wrong split">yanked' in rows[1]
    yanked = http.get("/ui/components/lab/b-extractor/versions/2").text
    assert 'id="yanked">Yanked' in yanked and "trained on the wrong split" in yanked


def test_component_file_download_from_the_page(http, zoo):
    r = http.get("/ui/components/lab/b-head/versions/1/file")
    assert r.status_code == 200
    assert "sha256:" + hashlib.sha256(r.content).hexdigest() == zoo.head["b"]["digest"]


def test_group_page_heatmap_links_cells_to_evaluations(http, zoo):
    groups = http.get("/ui/groups").text
    assert re.search(
        rf'<a href="/ui/groups/{zoo.group}">lab/rp@1</a></td>\s*<td>RP</td><td class="num">8</td><td class="num">8</td>',
        groups,
    ), groups
    page = http.get(f"/ui/groups/{zoo.group}").text
    assert 'id="member-count">8<' in page  # the aux head, three extractors and heads, the adapted extractor
    # The heatmap is a fragment of its own, which the page fetches (the browser test runs that script).
    assert f'data-src="/ui/groups/{zoo.group}/heatmap"' in page and "/ui/static/heatmap.js" in page
    assert 'class="cell' not in page
    fragment = http.get(f"/ui/groups/{zoo.group}/heatmap")
    assert fragment.status_code == 200 and "frame-ancestors 'none'" in fragment.headers["content-security-policy"]
    html = fragment.text
    cell = re.search(
        r'<a href="/ui/evaluations/(\d+)" class="cell measured( light)?" data-extractor="lab/a-extractor@1" '
        r'data-head="lab/b-head@1"><rect [^>]+/><text [^>]+>(\d+)</text><title>([^<]+)</title></a>',
        html,
    )
    assert cell, html
    # The evaluation with the most samples stands for the pair, not the first posted.
    assert int(cell.group(1)) == zoo.evaluations[("a", "b")]["id"] and cell.group(3) == "71"
    assert cell.group(4) == "lab/a-extractor@1 × lab/b-head@1: 71.0% on 500 images of digits-a:test"
    assert html.count('class="cell measured') == 6
    assert html.count('class="cell not-measured"') == 4 * 3 - 6  # 4 extractors × 3 heads
    assert "lab/c-extractor@1 × lab/a-head@1: not measured" in html
    assert "(6 of 12 pairs measured)" in html


def test_a_group_heatmap_on_other_data_says_which(make_registry, tmp_path):
    live = make_registry()
    with httpx.Client(base_url=live.url, timeout=30) as http:
        admin = live.token("admin")
        zoo = build_zoo(http, admin, tmp_path)
        other = "sha256:" + "d" * 64  # the 0-step point of a transfer on a noisy target set, say
        posted = http.post(
            "/evaluations",
            json={
                "extractor": zoo.ext["a"]["ref"],
                "head": zoo.head["b"]["ref"],
                "dataset": "digits-noisy:test",
                "value": 0.34,
                "samples": 900,
                "bn_mode": "batch",
                "data_digest": other,
            },
            headers={"Authorization": f"Bearer {admin}"},
        ).json()
        assert posted["own_test"] is False and posted["data_digest"] == other
        html = http.get(f"/ui/groups/{zoo.group}").text
        cells = http.get(f"/ui/groups/{zoo.group}/heatmap").text
        # The pair's cell still shows its recombination accuracy on the extractor's own test set...
        assert "lab/a-extractor@1 × lab/b-head@1: 71.0% on 500 images of digits-a:test" in cells
        assert "34.0%" not in cells and f"?data={other}" in html and "digits-noisy:test" in html
        # ... and the other data has a heatmap of its own, captioned with what it is.
        html = http.get(f"/ui/groups/{zoo.group}", params={"data": other}).text
        assert "on other data" in html and "digits-noisy:test" in html and "not each extractor's own test set" in html
        assert f'data-src="/ui/groups/{zoo.group}/heatmap?data=sha256%3A{"d" * 64}"' in html
        cells = http.get(f"/ui/groups/{zoo.group}/heatmap", params={"data": other}).text
        assert "lab/a-extractor@1 × lab/b-head@1: 34.0% on 900 images of digits-noisy:test" in cells
        assert "(1 of 12 pairs measured)" in cells
        # /compatible ranks by the own-test measurement only.
        items = http.get("/compatible", params={"head": zoo.head["b"]["ref"]}).json()["items"]
        a = next(i for i in items if i["component"]["ref"] == zoo.ext["a"]["ref"])
        assert a["measured_accuracy"] == 0.71


def test_evaluation_page_and_api(http, zoo):
    ev = zoo.evaluations[("a", "b")]
    api = http.get(f"/evaluations/{ev['id']}")
    assert api.status_code == 200
    # (created_at: SQLite hands back naive datetimes, so the read lacks the "Z" that the POST's answer has.)
    assert {k: v for k, v in api.json().items() if k != "created_at"} == {
        k: v for k, v in ev.items() if k != "created_at"
    }
    missing = http.get("/evaluations/999999")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    # Beyond 19 digits an id names no route (registry/api/params.py: the "id" converter).
    assert http.get("/evaluations/99999999999999999999").status_code == 404
    html = http.get(f"/ui/evaluations/{ev['id']}").text
    assert "digits-a:test" in html and "500 images" in html and "batch statistics" in html
    # 355 of 500 correct: Wilson 95% interval 66.9%-74.8%.
    assert re.search(r'id="ci95">66\.9% – 74\.8%', html), html


def test_jobs_page_shows_state_progress_refs_and_workers(http, zoo):
    html = http.get("/ui/jobs").text
    assert 'state-succeeded">succeeded' in html and 'state-queued">queued' in html
    assert 'href="/ui/components/lab/a-extractor/versions/1">lab/a-extractor@1</a>' in html
    workers = html[html.index('id="workers"') :]
    assert "gpu-box-1" in workers and "/ui/jobs/" not in workers  # done with its job
    assert "queued" in http.get("/ui/jobs", params={"status": "queued"}).text
    job = http.get(f"/ui/jobs/{zoo.job_id}").text
    assert "zoo-a" in job and "1 of 3" in job


BAD = [
    ("/ui/components/lab/nothing", 404, "no component named lab/nothing"),
    ("/ui/components/lab/a-extractor/versions/9", 404, "has no version 9"),
    ("/ui/components/Bad/x", 422, "namespace"),
    ("/?cursor=²", 422, "invalid cursor"),
    ("/?group=nope", 422, "group: invalid digest"),
    ("/ui/groups/" + "ab" * 32, 404, "no group anchored by"),
    ("/ui/evaluations/abc", 422, "evaluation_id"),
    ("/ui/jobs/99999999999999999999", 422, "job_id"),
    ("/ui/components/lab/a-extractor/versions/0", 422, "version"),
    ("/ui/jobs?status=sideways", 422, "unknown job state"),
    ("/ui/components/lab/a-extractor?compat_cursor=zz", 422, "invalid compat_cursor"),
]


def test_bad_requests_answer_pages_that_say_what_is_wrong(http, zoo):
    for path, status, message in BAD:
        r = http.get(path)
        assert r.status_code == status and r.headers["content-type"].startswith("text/html"), (path, r.text)
        assert message in r.text.replace("&#39;", "'"), path
        assert r.headers["x-error-code"] in ("not_found", "invalid_request", "invalid_name"), path


def test_pages_ask_for_a_token_when_anonymous_reads_are_off(make_registry, tmp_path):
    live = make_registry(anonymous_read=False)
    admin, reader = live.token("admin"), live.token("read")
    with httpx.Client(base_url=live.url) as http:
        zoo = build_zoo(http, admin, tmp_path)
        for path in ("/", "/ui/components/lab/a-extractor", f"/ui/groups/{zoo.group}", "/ui/jobs"):
            r = http.get(path)
            assert r.status_code == 401 and 'action="/ui/login"' in r.text, path
        wrong = http.post("/ui/login", data={"token": "pb_wrong", "next": "/ui/jobs"})
        assert wrong.status_code == 401 and "unknown, revoked or expired" in wrong.text
        ok = http.post("/ui/login", data={"token": reader, "next": "/ui/jobs"})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/jobs"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        # httpx keeps the cookie: the pages and the page's download link now work.
        assert http.get("/ui/jobs").status_code == 200
        assert "token #" in http.get("/").text
        assert http.get("/ui/components/lab/a-extractor/versions/1/file").status_code == 200
        # The API itself still wants the header, not the cookie.
        assert http.get("/components").status_code == 401
        # Only local paths after signing in: no open redirect.
        assert http.post("/ui/login", data={"token": reader, "next": "//evil.example"}).headers["location"] == "/"
        out = http.post("/ui/logout")
        assert out.status_code == 303
        assert http.get("/").status_code == 401
        # A revoked token in the cookie sends the reader back to the form.
        http.cookies.set("partsbin_token", reader)
        with live.session() as session:
            from partsbin.registry.crud.tokens import list_tokens, revoke_token

            reader_id = max(t.id for t in list_tokens(session) if t.scope == "read")
            revoke_token(session=session, token_id=reader_id)
            session.commit()
        assert "sign in again" in http.get("/").text


def test_tags_are_bounded_so_that_they_can_be_indexed(make_registry, tmp_path):
    live = make_registry()
    admin = live.token("admin")
    net = network(0)
    with httpx.Client(base_url=live.url) as http:
        for tags, status in ((["x" * 101], 422), ([f"t{i}" for i in range(65)], 422), ([" spaced ", "spaced"], 201)):
            card = extractor_card("lab/tagged").model_copy(update={"tags": tags})
            path = write_component(tmp_path / "t.st", net.extractor(), card)
            r = http.post(
                "/components",
                files={"file": ("t.st", path.read_bytes())},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert r.status_code == status, r.text
        assert r.json()["card"]["tags"] == ["spaced", "spaced"]
        assert [c["name"] for c in http.get("/components", params={"tag": "spaced"}).json()["items"]] == ["lab/tagged"]
    assert live.row_count() == 1


def test_the_client_lists_by_tag_and_text(shared, client_for):
    live, _, _ = shared
    reg = client_for(live)
    assert sorted(c.name for c in reg.list(tag="task-a")) == ["lab/a-extractor", "lab/a-head"]
    assert [c.name for c in reg.list(q="adapted", role="extractor")] == ["lab/a-adapted-extractor"]


def test_forms_refuse_other_sites_and_pages_send_security_headers(make_registry):
    live = make_registry()
    token = live.token("read")
    with httpx.Client(base_url=live.url, follow_redirects=False) as c:
        page = c.get("/")
        assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        # Login CSRF: another site's form may not sign a visitor in (or out).
        for origin in ("https://evil.example", "null"):
            r = c.post("/ui/login", data={"token": token}, headers={"Origin": origin})
            assert r.status_code == 403 and "set-cookie" not in r.headers, r.text
            assert "own pages" in r.text
        r = c.post("/ui/logout", headers={"Referer": "https://evil.example/page"})
        assert r.status_code == 403
        # From the registry's own page (or from a program, with no Origin at all) it works.
        r = c.post("/ui/login", data={"token": token}, headers={"Origin": live.url})
        assert r.status_code == 303 and "partsbin_token=" in r.headers["set-cookie"]
        assert c.post("/ui/logout").status_code == 303


def test_card_values_read_as_numbers_people_write(make_registry, tmp_path):
    from tests.helpers import head_card

    live = make_registry()
    net = network(0)
    card = head_card("lab/head").model_copy(update={"metrics": {"accuracy": 0.937037037037037, "loss": None}})
    path = write_component(tmp_path / "h.safetensors", net.head(), card)
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.token('admin')}"}) as c:
        assert c.post("/components", files={"file": path.read_bytes()}).status_code == 201
        page = c.get("/ui/components/lab/head").text
    assert "0.937" in page and "0.937037" not in page and ">None<" not in page
    assert "partsbin bench -e EXTRACTOR -H HEAD" in page
