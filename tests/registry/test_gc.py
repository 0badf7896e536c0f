"""``partsbin gc``: orphan blobs and crash leftovers, reported by default, removed on
request, and never a blob that a component references."""

from __future__ import annotations

import hashlib
import os

import httpx
from typer.testing import CliRunner

from partsbin.cli import app
from partsbin.registry.storage import make_storage
from tests.helpers import aux_rp, write_component


def test_gc_reports_then_removes_orphans_and_leftovers(live, tmp_path, monkeypatch):
    admin = live.token("admin")
    aux, card = aux_rp()
    with httpx.Client(base_url=live.url) as http:
        kept = http.post(
            "/components",
            files={"file": write_component(tmp_path / "a", aux, card).read_bytes()},
            headers={"Authorization": f"Bearer {admin}"},
        ).json()
    storage = make_storage(live.settings.resolved_storage_url)
    orphan_file = tmp_path / "orphan"
    orphan_file.write_bytes(b"stored, then the registry died before the row")
    orphan = hashlib.sha256(orphan_file.read_bytes()).hexdigest()
    storage.put_file(orphan, orphan_file)
    leftover = storage.root / "blobs" / "sha256" / orphan[:2] / f".{orphan}.dead.tmp"  # type: ignore[attr-defined]
    leftover.write_bytes(b"partial")
    old = 1_000_000_000
    for path in (storage.root / "blobs" / "sha256" / orphan[:2] / orphan, leftover):  # type: ignore[attr-defined]
        os.utime(path, (old, old))  # older than the grace period
    stale = live.settings.staging_dir / "proc-crashed"
    stale.mkdir(parents=True)
    (stale / "upload-x.safetensors").write_bytes(b"half an upload")

    monkeypatch.setenv("PARTSBIN_DATA_DIR", str(live.settings.data_dir))
    runner = CliRunner()
    report = runner.invoke(app, ["gc"])
    assert report.exit_code == 0, report.output
    assert f"orphan blob  sha256:{orphan}" in report.output and "leftover" in report.output
    assert "found 1 orphan blobs, 1 leftovers and 1 stale staging folders" in report.output
    assert "--delete" in report.output
    assert storage.exists(orphan) and leftover.exists() and stale.exists(), "a report removes nothing"
    # A young orphan is left alone: it may belong to an upload about to commit.
    assert "found 0 orphan blobs" in runner.invoke(app, ["gc", "--grace", "100000d"]).output

    removed = runner.invoke(app, ["gc", "--delete"])
    assert removed.exit_code == 0 and "removed 1 orphan blobs" in removed.output, removed.output
    assert not storage.exists(orphan) and not leftover.exists() and not stale.exists()
    assert storage.exists(kept["digest"].removeprefix("sha256:"))
    with httpx.Client(base_url=live.url) as http:
        assert http.get(f"/components/{kept['name']}/file").status_code == 200
    bad = runner.invoke(app, ["gc", "--grace", "soon"])
    assert bad.exit_code != 0 and "give a number and a unit" in bad.output
