"""Workers take jobs over HTTP with leases: each job runs exactly once."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from partsbin.trainer.worker import Worker


def tiny_spec(name: str, namespace: str = "jobs", **extra) -> dict:
    return {
        "name": name,
        "namespace": namespace,
        "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 4}},
        "tasks": [{"name": "a", "pair": "digits", "pair_task": "a"}],
        "settings": {"steps": 2, "batch_size": 16, "threads": 1, "test_limit": 64},
        **extra,
    }


def _run_workers(client_for, live, token: str, n_workers: int, **worker_kw) -> list[Worker]:
    workers = [Worker(client_for(live, token), name=f"w{i}", poll_seconds=0.2, **worker_kw) for i in range(n_workers)]
    threads = [threading.Thread(target=w.run, kwargs={"exit_when_idle": True}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return workers


def _twenty_jobs_exactly_once(client_for, live) -> None:
    admin = client_for(live, live.token("admin"))
    ids = [admin.jobs.submit(tiny_spec(f"job{i}"))["id"] for i in range(20)]
    _run_workers(client_for, live, live.token("publish", ["jobs"]), 2)
    jobs = {j["id"]: j for j in admin.jobs.list()}
    assert all(jobs[i]["status"] == "succeeded" for i in ids), [(i, jobs[i]["status"], jobs[i]["error"]) for i in ids]
    assert all(jobs[i]["attempts"] == 1 for i in ids)
    assert {jobs[i]["worker"] for i in ids} == {"w0", "w1"}, "both workers took jobs"
    # Exactly once: each run published its components once (version 1, no duplicates).
    refs = [r for i in ids for r in jobs[i]["result_refs"]]
    assert len(refs) == 40 and len(set(refs)) == 40 and all(r.endswith("@1") for r in refs)
    assert len(admin.list(namespace="jobs")) == 40


def test_two_workers_twenty_jobs_sqlite(live, client_for):
    _twenty_jobs_exactly_once(client_for, live)


@pytest.mark.postgres
def test_two_workers_twenty_jobs_postgres(make_registry, postgres_url, client_for):
    _twenty_jobs_exactly_once(client_for, make_registry(database_url=postgres_url))


def test_killed_worker_job_is_finished_by_another(live, client_for):
    admin = client_for(live, live.token("admin"))
    job = admin.jobs.submit(tiny_spec("orphan"))
    # A worker claims it with a short lease and dies: no heartbeat, no answer.
    dead = client_for(live, live.token("publish", ["jobs"]))
    # The lease is long enough that the second claim lands inside it on a loaded CI host
    # (a 1 s lease once expired between two HTTP calls there), then the test waits it out.
    lease = 4.0
    started = time.monotonic()
    claimed = dead.jobs.claim("dead-worker", lease_seconds=lease)
    assert claimed["id"] == job["id"] and claimed["status"] == "running"
    assert dead.jobs.claim("someone-else", lease_seconds=1) is None
    time.sleep(max(0.0, started + lease + 0.5 - time.monotonic()))
    _run_workers(client_for, live, live.token("publish", ["jobs"]), 1)
    done = admin.jobs.get(job["id"])
    assert done["status"] == "succeeded" and done["worker"] == "w0" and done["attempts"] == 2
    # The dead worker's late answer is refused: the lease is gone.
    with pytest.raises(Exception, match="not held under this lease"):
        dead.jobs.complete(job["id"], claimed["lease_id"], [])


def test_lease_expiry_is_bounded_by_max_attempts(live, client_for):
    admin = client_for(live, live.token("admin"))
    job = admin.jobs.submit(tiny_spec("doomed"), max_attempts=2)
    for _ in range(2):
        assert admin.jobs.claim("flaky", lease_seconds=1)["id"] == job["id"]
        time.sleep(1.2)
    assert admin.jobs.claim("flaky", lease_seconds=1) is None
    final = admin.jobs.get(job["id"])
    assert final["status"] == "failed" and "lease expired" in final["error"]


def test_worker_publishes_with_a_publish_token_when_reads_need_tokens(make_registry, client_for):
    live = make_registry(anonymous_read=False)
    publisher = live.token("publish", ["jobs"])
    with httpx.Client(base_url=live.url) as http:
        assert http.get("/jobs").status_code == 401
    reg = client_for(live, publisher)
    job = reg.jobs.submit(tiny_spec("secured", methods=["RP"], scheme="joint"))
    _run_workers(client_for, live, publisher, 1)
    done = reg.jobs.get(job["id"])
    assert done["status"] == "succeeded", done["error"]
    ext = reg.info("jobs/secured-a-extractor")
    assert ext.card.compat.anchors == [reg.info("jobs/secured-aux-rp").digest]
    assert ext.card.provenance.job == str(job["id"]) and ext.card.metrics["own_task_accuracy"] > 0
    assert ext.card.provenance.dataset.transform == [] and ext.card.provenance.libraries["torch"]
    # A read token cannot work on jobs.
    with pytest.raises(Exception, match="publish or admin"):
        client_for(live, live.token("read")).jobs.claim("x", 10)


def test_bad_spec_is_rejected_at_submission_naming_the_field(live, client_for):
    reg = client_for(live, live.token("admin"))
    with pytest.raises(Exception, match=r"spec\.settings\.batch_size"):
        reg.jobs.submit(tiny_spec("bad", settings={"batch_size": 1}))
    with pytest.raises(Exception, match=r"spec\.scheme"):
        reg.jobs.submit(tiny_spec("bad", scheme="sideways"))
    assert reg.jobs.list() == []


def test_cancel_and_release(live, client_for):
    reg = client_for(live, live.token("admin"))
    queued = reg.jobs.submit(tiny_spec("c1"))
    assert reg.jobs.cancel(queued["id"])["status"] == "cancelled"
    job = reg.jobs.submit(tiny_spec("c2"))
    claimed = reg.jobs.claim("w", 30)
    released = reg.jobs.release(job["id"], claimed["lease_id"])
    assert released["status"] == "queued" and released["attempts"] == 0
    claimed = reg.jobs.claim("w", 30)
    assert reg.jobs.cancel(job["id"])["cancel_requested"] is True
    beat = reg.jobs.heartbeat(job["id"], claimed["lease_id"], 30, {"step": 1})
    assert beat["cancel_requested"] and beat["progress"] == {"step": 1}
    assert reg.jobs.fail(job["id"], claimed["lease_id"], "cancelled")["status"] == "cancelled"


def test_job_kinds(live, client_for):
    from partsbin import InvalidUpload
    from partsbin.parts.jobs import job_kinds, parse_job_spec

    # Every kind the registry accepts, the worker can run: one registration names its runner.
    for kind in job_kinds().values():
        assert callable(kind.load_runner()), kind.name
    spec = {"name": "k", "namespace": "lab", "tasks": [{"name": "a", "pair": "digits", "pair_task": "a"}]}
    assert parse_job_spec(spec).kind == "train"  # specs written before there were kinds
    reg = client_for(live, live.token("publish", ["lab"]))
    with pytest.raises(InvalidUpload, match="unknown job kind 'paint'"):
        reg.jobs.submit({**spec, "kind": "paint"})
    assert reg.jobs.submit({**spec, "kind": "train"})["spec"]["kind"] == "train"


def test_finished_jobs_show_where_they_ended_and_bad_tokens_stop_the_worker(live, client_for):
    import os
    import subprocess
    import sys

    admin = client_for(live, live.token("admin"))
    job_id = admin.jobs.submit(tiny_spec("shown"))["id"]
    _run_workers(client_for, live, live.token("publish", ["jobs"]), 1)
    job = admin.jobs.get(job_id)
    assert job["status"] == "succeeded"
    p = job["progress"]
    assert p["final"] and p["done"] == p["total"] == 2 and p["step"] == p["steps"] == 2
    assert job["kind"] == "train" and job["result"]["tasks"]["a"]["test_images"] == 64
    assert 0 <= job["result"]["tasks"]["a"]["own_task_accuracy"] <= 1
    env = {**os.environ, "PARTSBIN_URL": live.url, "PARTSBIN_TOKEN": live.token("admin")}
    shown = subprocess.run(
        [sys.executable, "-m", "partsbin", "jobs", "show", str(job_id)], capture_output=True, text=True, env=env
    )
    assert "job " + str(job_id) + ": train jobs/shown (succeeded)" in shown.stdout, shown.stdout
    assert "task a: own-task accuracy" in shown.stdout and "trained 2 steps" in shown.stdout, shown.stdout
    # The spec as YAML, without nulls.
    assert "pair_task: a" in shown.stdout and "null" not in shown.stdout, shown.stdout
    # A worker whose token is refused stops with the message instead of retrying forever.
    started = time.monotonic()
    bad = subprocess.run(
        [sys.executable, "-m", "partsbin", "worker", "--once", "--poll", "0.1"],
        capture_output=True,
        text=True,
        env={**env, "PARTSBIN_TOKEN": "pb_not-a-token"},
        timeout=60,
    )
    assert bad.returncode == 1 and "unknown, revoked or expired" in bad.stderr, bad.stderr
    assert time.monotonic() - started < 30
    # One format per stream: the worker's lines are JSON objects, no httpx lines among them.
    assert all(line.startswith(("{", "error:")) for line in bad.stderr.splitlines() if line.strip()), bad.stderr
