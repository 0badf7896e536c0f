"""A small zoo published over HTTP for the page and operations tests: one RP group with
three networks (a, b, c), an extractor adapted from a's, evaluations for six of the nine
pairs, and a job that published a's parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from partsbin.parts.describe import card_for
from tests.helpers import CFG, LABELS, aux_rp, network, write_component

# (extractor task, head task) -> accuracy; the other three pairs stay unmeasured.
MEASURED = {
    ("a", "a"): 0.974,
    ("b", "b"): 0.951,
    ("c", "c"): 0.933,
    ("a", "b"): 0.71,
    ("b", "a"): 0.642,
    ("a", "c"): 0.52,
}
TEST_DIGEST = {task: "sha256:" + (task * 64) for task in "abc"}
JOB_SPEC = {
    "name": "zoo-a",
    "namespace": "lab",
    "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 4}},
    "tasks": [{"name": "a", "pair": "digits", "pair_task": "a"}],
    "settings": {"steps": 2, "batch_size": 16, "threads": 1, "test_limit": 64},
}


@dataclass
class Zoo:
    anchor: str  # sha256:HEX of the RP head anchoring the group
    aux: dict[str, Any]
    ext: dict[str, dict[str, Any]] = field(default_factory=dict)
    head: dict[str, dict[str, Any]] = field(default_factory=dict)
    adapted: dict[str, Any] = field(default_factory=dict)
    evaluations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    job_id: int = 0

    @property
    def group(self) -> str:
        return self.anchor.removeprefix("sha256:")


def upload(http: httpx.Client, token: str, path: Path) -> dict[str, Any]:
    r = http.post(
        "/components",
        files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    return r.json()


def build_zoo(http: httpx.Client, token: str, tmp: Path) -> Zoo:
    auth = {"Authorization": f"Bearer {token}"}
    job = http.post("/jobs", json={"spec": JOB_SPEC}, headers=auth)
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    aux, aux_card = aux_rp(name="lab/rp")
    aux_card = aux_card.model_copy(update={"description": "rotation prediction aux head; frozen once published"})
    zoo = Zoo(anchor="", aux=upload(http, token, write_component(tmp / "rp.st", aux, aux_card)))
    zoo.anchor = zoo.aux["digest"]
    compat = {"anchors": [zoo.anchor], "methods": ["RP"], "scheme": "incremental"}
    for i, task in enumerate("abc"):
        net = network(i + 1)
        # Each task's test set, by the digest of its images: what evaluations on it name.
        test = {"source": "digits", "data_digest": TEST_DIGEST[task]}
        provenance = {
            "dataset": {"name": f"digits-{task}", "split": "train", "test": test},
            "seed": i,
            "job": str(job_id),
        }
        common: dict[str, Any] = {
            "arch": "resnet_cifar",
            "config": CFG,
            "split": "stage2",
            "provenance": provenance,
            "metrics": {"own_task_accuracy": MEASURED[(task, task)], "test_examples": 500},
            "tags": ["zoo", f"task-{task}"],
            "license": "Apache-2.0",
        }
        ext_card = card_for(
            name=f"lab/{task}-extractor",
            role="extractor",
            input_size=16,
            compat=compat,
            description=f"feature extractor of task {task}",
            **common,
        )
        zoo.ext[task] = upload(http, token, write_component(tmp / f"{task}-e.st", net.extractor(), ext_card))
        head_card = card_for(
            name=f"lab/{task}-head",
            role="head",
            labels=LABELS,
            compat={**compat, "sibling": zoo.ext[task]["ref"]},
            description=f"task head of task {task}",
            **common,
        )
        zoo.head[task] = upload(http, token, write_component(tmp / f"{task}-h.st", net.head(), head_card))
        if task == "b":
            # A second version of b's extractor, yanked, and an alias on the first.
            v2 = upload(http, token, write_component(tmp / "b-e2.st", network(7).extractor(), ext_card))
            yank = http.post(
                f"/components/lab/b-extractor/versions/{v2['version']}/yank",
                json={"reason": "trained on the wrong split"},
                headers=auth,
            )
            assert yank.status_code == 200, yank.text
            alias = http.put("/components/lab/b-extractor/aliases/stable", json={"version": 1}, headers=auth)
            assert alias.status_code == 200, alias.text
    adapted_card = card_for(
        name="lab/a-adapted-extractor",
        role="extractor",
        arch="resnet_cifar",
        config=CFG,
        split="stage2",
        input_size=16,
        compat=compat,
        description="extractor of task a adapted to unlabelled target images (RP)",
        provenance={"adapted_from": zoo.ext["a"]["digest"], "dataset": {"name": "digits-target"}},
        tags=["zoo", "adapted"],
    )
    zoo.adapted = upload(http, token, write_component(tmp / "adapted.st", network(9).extractor(), adapted_card))
    # A smaller measurement of a pair first: pages show the one with the most samples.
    for (e, h), value in [(("a", "b"), 0.5), *MEASURED.items()]:
        r = http.post(
            "/evaluations",
            json={
                "extractor": zoo.ext[e]["ref"],
                "head": zoo.head[h]["ref"],
                "dataset": f"digits-{e}:test",
                "value": value,
                "samples": 100 if value == 0.5 else 500,
                "bn_mode": "batch",
                "batch_size": 64,
                "data_digest": TEST_DIGEST[e],
                "details": {"unrestricted": round(value - 0.02, 3)},
            },
            headers=auth,
        )
        assert r.status_code == 201, r.text
        zoo.evaluations[(e, h)] = r.json()
    claim = http.post("/jobs/claim", json={"worker": "gpu-box-1", "lease_seconds": 600}, headers=auth)
    assert claim.status_code == 200 and claim.json()["id"] == job_id, claim.text
    lease = claim.json()["lease_id"]
    beat = http.post(
        f"/jobs/{job_id}/heartbeat",
        json={"lease_id": lease, "progress": {"step": 2, "total": 2, "task": "a"}},
        headers=auth,
    )
    assert beat.status_code == 200, beat.text
    refs = [zoo.ext["a"]["ref"], zoo.head["a"]["ref"]]
    done = http.post(f"/jobs/{job_id}/complete", json={"lease_id": lease, "refs": refs}, headers=auth)
    assert done.status_code == 200, done.text
    queued = http.post("/jobs", json={"spec": {**JOB_SPEC, "name": "zoo-b"}}, headers=auth)
    assert queued.status_code == 201, queued.text
    zoo.job_id = job_id
    return zoo
