"""Jobs as one contract, tried as a hostile user with a publish token would: every spec is
bounded and confined at submission, the worker checks paths again after resolving
symlinks, cancel and wall time take effect within seconds, readers see messages (not
tracebacks), and registered datasets make a job portable across workers that share no
file system. Over the real server, with real worker processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from partsbin import InvalidUpload
from partsbin.parts.cpus import available_cpus
from tests.trainer.test_worker import tiny_spec


def _with_data(data: dict[str, Any], **settings: Any) -> dict[str, Any]:
    spec = tiny_spec("hostile", namespace="lab")
    spec["tasks"] = [{"name": "a", "data": data}]
    spec["settings"] = {**spec["settings"], **settings}
    return spec


def _worker(live: Any, token: str, tmp: Path, *extra: str, **env: str) -> subprocess.Popen[str]:
    """`partsbin worker` in a process of its own, with its own cache."""
    full = {
        **os.environ,
        "PARTSBIN_URL": live.url,
        "PARTSBIN_TOKEN": token,
        "PARTSBIN_CACHE_DIR": str(tmp / "worker-cache"),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "partsbin", "worker", "--poll", "0.2", "--threads", "1", *extra],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_hostile_specs_are_refused_at_submission_and_nothing_is_queued(make_registry, client_for, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    live = make_registry(data_roots=str(root))
    reg = client_for(live, live.token("publish", ["lab"]))
    adapt = {
        "kind": "adapt",
        "namespace": "lab",
        "extractor": "lab/e",
        "rp_head": "lab/rp",
        "data": {"source": "digits"},
    }
    deep = tiny_spec("deep", namespace="lab")
    deep["arch"] = {"name": "resnet_cifar", "config": {"depth": 1202, "width": 1024}}
    cases = [
        (_with_data({"source": "npz", "path": "/etc/passwd"}), "must be relative to one of the data roots"),
        (_with_data({"source": "npz", "path": "../../etc/passwd"}), "may not contain '..'"),
        (_with_data({"source": "folder", "path": "~root"}), "must be relative"),
        (_with_data({"source": "digits"}, steps=10**12), "(PARTSBIN_MAX_JOB_STEPS)"),
        (_with_data({"source": "digits"}, threads=1024), "(PARTSBIN_MAX_JOB_THREADS)"),
        (deep, "(PARTSBIN_MAX_JOB_PARAMS)"),
        (
            _with_data({"source": "digits"}, batch_size=256, distributed={"nproc_per_node": 256}),
            "(PARTSBIN_MAX_JOB_PROCESSES)",
        ),
        (
            _with_data({"source": "digits", "transforms": [{"op": "resize", "size": 4096}]}),
            "(PARTSBIN_MAX_JOB_IMAGE_SIZE)",
        ),
        (_with_data({"source": "digits"}, max_seconds=10**9), "(PARTSBIN_MAX_JOB_SECONDS)"),
        (
            _with_data({"source": "digits"}, distributed={"nnodes": 2, "rdzv_endpoint": "evil.example:29400"}),
            "not through the queue",
        ),
        ({**adapt, "settings": {"distributed": {"nproc_per_node": 2}}}, "settings.distributed is not used by adapt"),
    ]
    for spec, message in cases:
        with pytest.raises(InvalidUpload, match=re.escape(message)):
            reg.jobs.submit(spec)
    # Every limit a spec exceeds is named in one answer.
    with pytest.raises(InvalidUpload) as both:
        reg.jobs.submit(_with_data({"source": "digits"}, steps=10**12, threads=1024))
    assert "PARTSBIN_MAX_JOB_STEPS" in str(both.value) and "PARTSBIN_MAX_JOB_THREADS" in str(both.value)
    # The answer never tells whether something outside the roots exists.
    answers = []
    for path in ("/etc/passwd", "/etc/no-such-file"):
        with pytest.raises(InvalidUpload) as refused:
            reg.jobs.submit(_with_data({"source": "npz", "path": path}))
        answers.append(str(refused.value).replace(path, "PATH").split(" [")[0])
    assert answers[0] == answers[1]
    assert reg.jobs.list() == []

    # A registry that declares no data roots takes no path at all.
    bare = make_registry()
    with pytest.raises(InvalidUpload, match="declares no data roots"):
        client_for(bare, bare.token("publish", ["lab"])).jobs.submit(_with_data({"source": "npz", "path": "a.npz"}))
    # What is accepted records the wall time it may take.
    job = reg.jobs.submit(_with_data({"source": "digits"}))
    assert job["spec"]["settings"]["max_seconds"] == live.settings.max_job_seconds
    assert "distributed" not in job["spec"]["settings"] or job["spec"]["settings"]["distributed"] is None


def _npz(path: Path, n: int = 64) -> Path:
    from partsbin.parts.data.sources import load_digits

    d = load_digits("train")
    x = (d.x[:n, 0].numpy() * 255).round().astype(np.uint8)
    np.savez(path, x_train=x, y_train=d.y[:n].numpy(), x_test=x, y_test=d.y[:n].numpy(), classes=np.array(d.classes))
    return path


def test_the_worker_refuses_a_symlink_out_of_the_roots_and_readers_see_no_traceback(
    make_registry, client_for, tmp_path
):
    root = tmp_path / "root"
    root.mkdir()
    outside = _npz(tmp_path / "secret.npz")
    (root / "inside.npz").symlink_to(outside)
    (root / "dangling.npz").symlink_to(tmp_path / "no-such-file.npz")
    live = make_registry(data_roots=str(root))
    publisher = live.token("publish", ["lab"])
    reg = client_for(live, publisher)
    ids = [reg.jobs.submit(_with_data({"source": "npz", "path": p}))["id"] for p in ("inside.npz", "dangling.npz")]
    worker = _worker(live, publisher, tmp_path, "--once", PARTSBIN_DATA_ROOTS=str(root))
    worker.communicate(timeout=120)
    errors = []
    for job_id in ids:
        job = reg.jobs.get(job_id)
        assert job["status"] == "failed", job
        assert "resolves outside the data root" in job["error"], job["error"]
        assert "Traceback" not in job["error"] and job["error_detail"] is None
        errors.append(job["error"].replace("inside.npz", "P").replace("dangling.npz", "P"))
    # A link to a file that exists and one to a file that does not: the same answer.
    assert errors[0] == errors[1]
    admin = client_for(live, live.token("admin"))
    assert "Traceback" in admin.jobs.get(ids[0])["error_detail"]
    page = httpx.get(f"{live.url}/ui/jobs/{ids[0]}").text
    assert "resolves outside the data root" in page and "Traceback" not in page
    assert not reg.list(namespace="lab"), "nothing was published"


def test_cancel_and_wall_time_stop_a_long_job_within_seconds_and_the_worker_keeps_serving(
    make_registry, client_for, tmp_path
):
    live = make_registry(max_job_threads=64)
    publisher = live.token("publish", ["lab"])
    reg = client_for(live, publisher)
    long = {"steps": 150_000, "batch_size": 16}
    running = reg.submit(_with_data({"source": "digits"}, **long))
    worker = _worker(live, publisher, tmp_path)
    try:
        _until(lambda: running.refresh().status == "running" and (running.progress or {}).get("step"), 90, "training")
        asked = time.monotonic()
        running.cancel()
        _until(lambda: running.refresh().status == "cancelled", 10, "the cancel to take effect")
        assert time.monotonic() - asked < 10

        timed = reg.submit(_with_data({"source": "digits"}, max_seconds=3, **long))
        _until(lambda: timed.refresh().done, 60, "the wall time")
        assert timed.status == "failed" and "wall time of 3 s" in timed.error, timed.error

        # More threads than this worker has CPUs: the job fails with that message, and the
        # worker takes the next job.
        greedy = reg.submit(_with_data({"source": "digits"}, threads=available_cpus() + 1))
        _until(lambda: greedy.refresh().done, 60, "the greedy job")
        assert greedy.status == "failed" and "this worker has" in greedy.error, greedy.error
        fine = reg.submit(tiny_spec("after", namespace="lab"))
        fine.wait(timeout=120, poll_seconds=0.2)
        assert fine.result.tasks["a"].test_images == 64
    finally:
        worker.terminate()
        worker.communicate(timeout=30)


def test_a_registered_dataset_trains_on_a_worker_with_another_cache(make_registry, client_for, tmp_path):
    from partsbin import UsageError
    from partsbin.parts.datasets import pack_folder

    live = make_registry()
    publisher = live.token("publish", ["lab"])
    reg = client_for(live, publisher)
    ds = reg.push_data(
        _npz(tmp_path / "digits.npz", n=200), name="lab/digits-small", license="BSD-3-Clause", source="sklearn"
    )
    assert ds.ref == "lab/digits-small@1" and ds.created and ds.format == "npz"
    facts = ds.card.facts
    assert facts.classes == [str(i) for i in range(10)] and facts.splits == {"train": 200, "test": 200}
    assert facts.shape == [1, 8, 8] and ds.card.license == "BSD-3-Clause"
    assert not reg.push_data(tmp_path / "digits.npz", name="lab/digits-small").created  # same bytes, same version
    assert [d.ref for d in reg.datasets()] == ["lab/digits-small@1"]
    from partsbin import DatasetNotFound, JobNotFound, NotFound

    with pytest.raises(DatasetNotFound):
        reg.pull_data("lab/no-such-data")
    with pytest.raises(JobNotFound) as missing:
        reg.job(10**6)
    assert isinstance(missing.value, NotFound) and isinstance(missing.value, LookupError)

    spec = tiny_spec("from-dataset", namespace="lab")
    spec["tasks"] = [{"name": "a", "data": {"dataset": "lab/digits-small@1", "classes": ["0", "1", "2"]}}]
    job = reg.submit(spec)
    # A built-in source needs no data root, on a worker that declares none.
    builtin = reg.submit(_with_data({"source": "fashion-mnist", "limit": 300, "classes": ["bag", "coat"]}))
    worker = _worker(live, publisher, tmp_path, "--once")
    worker.communicate(timeout=180)
    job.refresh()
    assert job.status == "succeeded", job.error
    assert builtin.refresh().status == "succeeded", builtin.error
    ext = reg.info(next(r for r in job.refs if "-extractor@" in r))
    recorded = ext.card.provenance.dataset
    assert recorded.name == "dataset:lab/digits-small@1"
    assert recorded.model_extra["dataset"] == {"ref": "lab/digits-small@1", "digest": ds.digest}
    assert recorded.test["dataset"] == "lab/digits-small@1"
    assert (tmp_path / "worker-cache" / "blobs" / "sha256" / ds.hex).is_file(), "the worker pulled it into its cache"
    # The benchmark rebuilds the test set from the registered dataset too.
    head = next(r for r in job.refs if r.split("@")[0].endswith("-head"))
    cell = reg.bench([ext.ref], [head], post=False, threads=1).cells[0]
    assert cell.samples == ext.card.metrics["test_examples"]

    # A folder of <class>/<image> is packed the same way on every machine.
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "pics" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (6, 6), (i * 40, 0, 0)).save(tmp_path / "pics" / cls / f"{i}.png")
    pics = reg.push_data(tmp_path / "pics", name="lab/pics")
    assert pics.format == "image-tar" and pics.card.facts.classes == ["cat", "dog"]
    assert pics.card.facts.splits == {"all": 6} and pics.card.facts.shape == [3, 6, 6]
    pack_folder(tmp_path / "pics", tmp_path / "again.tar")
    assert reg.push_data(tmp_path / "again.tar", name="lab/pics").ref == pics.ref
    # An archive with a link in it is refused, by the client and by the registry.
    import tarfile

    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        link = tarfile.TarInfo("cat/x.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(UsageError, match="link"):
        reg.push_data(tmp_path / "evil.tar", name="lab/evil")
    with (tmp_path / "evil.tar").open("rb") as fh:
        answer = httpx.post(
            f"{live.url}/datasets",
            headers={"Authorization": f"Bearer {publisher}"},
            files={"file": ("evil.tar", fh)},
            data={"card": '{"name": "lab/evil"}'},
        )
    assert answer.status_code == 422 and "link" in answer.json()["detail"]
    assert [d.ref for d in reg.datasets()] == ["lab/digits-small@1", "lab/pics@1"]
