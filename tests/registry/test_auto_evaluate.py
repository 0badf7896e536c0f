"""The registry measures what it stores: a new component's pairs in its groups are queued
as evaluate jobs while a worker is around, measured once on the extractor's own test set,
and fill the group's heatmap as the registry's own (trusted) evaluations."""

from __future__ import annotations

import httpx

from partsbin.trainer.jobs import run_job
from partsbin.trainer.worker import Worker
from tests.trainer.test_worker import tiny_spec


def _pair_spec(name: str) -> dict:
    spec = tiny_spec(name, namespace="lab", methods=["RP"], scheme="joint")
    spec["tasks"] = [
        {"name": "a", "pair": "digits", "pair_task": "a"},
        {"name": "b", "pair": "digits", "pair_task": "b"},
    ]
    return spec


def test_a_new_group_fills_its_heatmap_through_the_workers(live, client_for):
    from partsbin.parts.jobs import parse_job_spec

    admin = client_for(live, live.token("admin"))
    publisher = live.token("publish", ["lab"])
    reg = client_for(live, publisher)
    # No worker was ever heard from: nothing is queued (PARTSBIN_AUTO_EVALUATE=auto).
    run_job(parse_job_spec(_pair_spec("quiet")), reg)
    assert admin.jobs.list() == []

    worker = Worker(client_for(live, publisher), name="w", poll_seconds=0.1)
    assert worker.run(exit_when_idle=True) == 0  # a worker polls: the registry has one now
    refs = run_job(parse_job_spec(_pair_spec("pair")), reg).refs
    jobs = admin.jobs.list()
    # Four pairs (two extractors, two heads of one group), each asked for once.
    heads = sorted(h for j in jobs for h in j["spec"]["heads"])
    assert all(j["kind"] == "evaluate" and j["origin"] == "registry" for j in jobs), jobs
    assert heads == sorted([r for r in refs if r.split("@")[0].endswith("-head")] * 2)
    anchor = reg.info(next(r for r in refs if "-aux-rp" in r)).digest.removeprefix("sha256:")
    assert reg.group(anchor)["queued_evaluations"] == 4
    page = httpx.get(f"{live.url}/ui/groups/{anchor}/heatmap").text
    assert "4 queued for the workers" in page and "0 of 4 pairs measured" in page

    assert worker.run(exit_when_idle=True) == len(jobs)
    assert all(j["status"] == "succeeded" for j in admin.jobs.list()), admin.jobs.list()
    assert reg.group(anchor)["queued_evaluations"] == 0
    exts = [r for r in refs if r.split("@")[0].endswith("-extractor")]
    for ext in exts:
        evs = reg.evaluations(extractor=ext)
        assert len(evs) == 2 and all(e["own_test"] and e["trust"] == "worker" for e in evs), evs
    page = httpx.get(f"{live.url}/ui/groups/{anchor}/heatmap").text
    assert "4 of 4 pairs measured" in page and "queued" not in page
    # Measured pairs rank /compatible.
    items = reg.compatible(head=next(r for r in refs if r.endswith("-a-head@1")))
    assert all(i["status"].startswith("measured") for i in items), items

    # No duplicates: the same bytes again ask for nothing; a new head asks for its pairs only.
    ext_a = reg.pull(exts[0])
    assert not reg.push(ext_a.path).created
    assert len(admin.jobs.list()) == len(jobs)
