"""Who may re-rank /compatible: evaluations by the pair's owners, admins and the
registry's own workers rank; anyone else's are shown as third-party; a pair measured
at chance level is "measured: not compatible" and comes after the unmeasured ones."""

from __future__ import annotations

import httpx

from tests.helpers import aux_rp, extractor_card, head_card, network, own_test_digest, write_component


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _post(http, token, ext, head="lab/head", value=0.9, samples=1000, **kw):  # type: ignore[no-untyped-def]
    body = {
        "extractor": ext,
        "head": head,
        "dataset": "d",
        "value": value,
        "samples": samples,
        "bn_mode": "batch",
        "data_digest": own_test_digest(ext),  # on the extractor's own test set
        **kw,
    }
    return http.post("/evaluations", json=body, headers=_auth(token))


def _order(http) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    items = http.get("/compatible", params={"head": "lab/head"}).json()["items"]
    return [(i["component"]["ref"], i["status"]) for i in items]


def test_only_trusted_evaluations_rank(live, tmp_path):
    admin = live.token("admin")
    owner = live.token("publish", ["lab"], owner=True)
    stranger = live.token("publish", ["spam"])  # any publish token may post evaluations
    member = live.token("publish", ["lab"])  # may publish into lab, does not own it
    aux, card = aux_rp()
    with httpx.Client(base_url=live.url) as http:
        anchor = http.post(
            "/components", files={"file": write_component(tmp_path / "a", aux, card).read_bytes()}, headers=_auth(admin)
        ).json()["digest"]
        for path, module, c in [(tmp_path / "h", network(0).head(), head_card("lab/head", [anchor]))] + [
            (tmp_path / f"e{i}", network(i).extractor(), extractor_card(f"lab/e{i}", [anchor])) for i in (1, 2, 3, 4)
        ]:
            assert http.post(
                "/components", files={"file": write_component(path, module, c).read_bytes()}, headers=_auth(admin)
            ).is_success
        declared = [(f"lab/e{i}@1", "declared, unmeasured") for i in (1, 2, 3, 4)]
        assert _order(http) == declared

        # A stranger and a mere member post glowing numbers: nothing moves, but they show.
        assert _post(http, stranger, "lab/e4", value=0.99, samples=10**6).json()["trust"] == "third-party"
        assert _post(http, member, "lab/e3", value=0.98, samples=10**6).json()["trust"] == "third-party"
        assert _order(http) == declared
        items = http.get("/compatible", params={"head": "lab/head"}).json()["items"]
        e4 = next(i for i in items if i["component"]["ref"] == "lab/e4@1")
        assert [r["kind"] for r in e4["reasons"]] == ["declared", "third-party"]
        assert e4["reasons"][1]["trust"] == "third-party" and "not used for ranking" in e4["reasons"][1]["detail"]

        # The namespace's owner and an admin do rank; a chance-level result goes last.
        assert _post(http, owner, "lab/e2", value=0.8).json()["trust"] == "owner"
        assert _post(http, admin, "lab/e1", value=0.9).json()["trust"] == "admin"
        # Three classes: chance is 1/3, and 36% of 200 has a 95% interval reaching it.
        assert _post(http, admin, "lab/e3", value=0.36, samples=200, classes=3).status_code == 201
        assert _order(http) == [
            ("lab/e1@1", "measured"),
            ("lab/e2@1", "measured"),
            ("lab/e4@1", "declared, unmeasured"),
            ("lab/e3@1", "measured: not compatible"),
        ]
        # Pages of one walk the three parts in the same order.
        seen, cursor = [], None
        while True:
            page = http.get(
                "/compatible", params={"head": "lab/head", "limit": 1, **({"cursor": cursor} if cursor else {})}
            ).json()
            seen += [i["component"]["ref"] for i in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert seen == ["lab/e1@1", "lab/e2@1", "lab/e4@1", "lab/e3@1"]
        listed = http.get("/evaluations", params={"extractor": "lab/e4"}).json()
        assert [(e["trust"], e["posted_by"] is not None) for e in listed] == [("third-party", True)]


def test_a_workers_evaluation_under_a_trusted_job_ranks(live, tmp_path):
    owner = live.token("publish", ["lab"], owner=True)
    worker = live.token("publish", ["lab"])  # workers hold plain publish tokens
    admin = live.token("admin")
    aux, card = aux_rp()
    with httpx.Client(base_url=live.url) as http:
        anchor = http.post(
            "/components", files={"file": write_component(tmp_path / "a", aux, card).read_bytes()}, headers=_auth(admin)
        ).json()["digest"]
        for path, module, c in (
            (tmp_path / "h", network(0).head(), head_card("lab/head", [anchor])),
            (tmp_path / "e", network(1).extractor(), extractor_card("lab/e1", [anchor])),
        ):
            assert http.post(
                "/components", files={"file": write_component(path, module, c).read_bytes()}, headers=_auth(admin)
            ).is_success
        spec = {"name": "ev", "namespace": "lab", "tasks": [{"name": "a", "pair": "digits", "pair_task": "a"}]}
        job = http.post("/jobs", json={"spec": spec}, headers=_auth(owner)).json()
        claim = http.post("/jobs/claim", json={"worker": "w"}, headers=_auth(worker)).json()
        assert claim["id"] == job["id"]
        ev = _post(http, worker, "lab/e1", job_id=job["id"], lease_id=claim["lease_id"]).json()
        assert ev["trust"] == "worker" and ev["job_id"] == job["id"]
        assert _order(http) == [("lab/e1@1", "measured")]
        # Without the lease it is the worker's own word: third-party; a wrong lease is refused.
        assert _post(http, worker, "lab/e1").json()["trust"] == "third-party"
        bad = _post(http, worker, "lab/e1", job_id=job["id"], lease_id="not-the-lease")
        assert bad.status_code == 409 and bad.json()["code"] == "conflict"
        assert _post(http, worker, "lab/e1", job_id=job["id"]).status_code == 422


def test_complete_and_fail_are_idempotent(live):
    worker = live.token("publish", ["lab"])
    with httpx.Client(base_url=live.url) as http:
        spec = {"name": "x", "namespace": "lab", "tasks": [{"name": "a", "pair": "digits", "pair_task": "a"}]}
        ids = [http.post("/jobs", json={"spec": spec}, headers=_auth(worker)).json()["id"] for _ in range(2)]
        first = http.post("/jobs/claim", json={"worker": "w"}, headers=_auth(worker)).json()
        body = {"lease_id": first["lease_id"], "refs": ["lab/x@1"]}
        done = [http.post(f"/jobs/{ids[0]}/complete", json=body, headers=_auth(worker)) for _ in range(2)]
        assert [r.status_code for r in done] == [200, 200] and done[1].json()["status"] == "succeeded"
        assert done[1].json()["result_refs"] == ["lab/x@1"]
        other = http.post(f"/jobs/{ids[0]}/complete", json={"lease_id": "someone-else"}, headers=_auth(worker))
        assert other.status_code == 409
        second = http.post("/jobs/claim", json={"worker": "w"}, headers=_auth(worker)).json()
        fail = {"lease_id": second["lease_id"], "error": "boom"}
        failed = [http.post(f"/jobs/{ids[1]}/fail", json=fail, headers=_auth(worker)) for _ in range(2)]
        assert [r.status_code for r in failed] == [200, 200] and failed[1].json()["status"] == "failed"
