"""Architecture plugins end to end, with the example plugin that `make setup` installs
(examples/partsbin-example-arch): listed, published and checked at upload, trained by a
worker, assembled; and what a registry without an arch, or with a broken plugin, does."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

import partsbin
from partsbin.parts.archs import _registry, build, list_archs, provider_of
from partsbin.parts.archs._plugins import GROUP, load_plugins
from partsbin.parts.describe import card_for
from partsbin.parts.safetensors_format import save_state_dict
from partsbin.trainer.worker import Worker
from tests.helpers import write_component

PLUGIN, ARCH = "partsbin-example-arch", "example_cnn"
CFG: dict[str, Any] = {"width": 4, "in_chans": 1, "num_classes": 3}


@pytest.fixture(scope="module", autouse=True)
def _example_plugin_installed() -> None:
    try:
        metadata.distribution(PLUGIN)
    except metadata.PackageNotFoundError:
        pytest.fail(f"the example plugin is not installed: pip install --no-deps -e examples/{PLUGIN} (make setup)")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _upload(http: httpx.Client, token: str, path: Path, card: dict[str, Any] | None = None) -> httpx.Response:
    return http.post(
        "/components",
        files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        data={"card": json.dumps(card)} if card is not None else {},
        headers=_auth(token),
    )


def _example_net(**cfg: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(ARCH, **{**CFG, **cfg}).eval()


def test_archs_lists_builtins_and_the_plugin_with_their_providers(http: httpx.Client) -> None:
    r = http.get("/archs")  # a read: no token needed
    assert r.status_code == 200, r.text
    archs = {a["name"]: a for a in r.json()}
    assert {"resnet_cifar", "wide_resnet", "mobilenetv2_cifar", "stitch", ARCH} <= set(archs)
    assert (archs["resnet_cifar"]["distribution"], archs["resnet_cifar"]["version"]) == (
        "partsbin",
        partsbin.__version__,
    )
    plugin = archs[ARCH]
    assert (plugin["distribution"], plugin["version"]) == (PLUGIN, metadata.version(PLUGIN))
    assert plugin["split_points"] == ["block1", "block2"] and plugin["default_split"] == "block2"
    width = plugin["config_schema"]["properties"]["width"]
    assert (width["minimum"], width["maximum"]) == (4, 512)
    # A config with required fields: its split points are the builder's business, the default is still said.
    assert archs["stitch"]["split_points"] is None and archs["stitch"]["default_split"] == "adapter"
    assert http.get("/archs", params={"x": 1}).status_code == 422  # like every route


def test_a_card_records_the_provider_and_old_cards_keep_their_json() -> None:
    card = card_for(name="lab/e", role="extractor", arch=ARCH, config=CFG, split="block2", input_size=16)
    assert card.arch.provider is not None
    assert (card.arch.provider.distribution, card.arch.provider.version) == (PLUGIN, metadata.version(PLUGIN))
    assert json.loads(card.embedded_json())["arch"]["provider"] == {"distribution": PLUGIN, "version": "0.1.0"}
    builtin = card_for(
        name="lab/r", role="head", arch="resnet_cifar", config={"depth": 8}, split="stage2", labels=["a"]
    )
    assert builtin.arch.provider is not None and builtin.arch.provider.distribution == "partsbin"
    # A card made before providers were recorded dumps exactly as it did: no "provider": null.
    old = builtin.model_dump(mode="json")
    del old["arch"]["provider"]
    assert "provider" not in type(builtin).model_validate(old).model_dump(mode="json")["arch"]


def test_publish_the_plugins_parts_checked_at_upload(live, http: httpx.Client, tmp_path: Path) -> None:
    admin = live.token("admin")
    net = build(ARCH, **CFG)
    ext_card = card_for(
        name="lab/cnn-extractor", role="extractor", arch=ARCH, config=CFG, split="block2", input_size=16
    )
    assert ext_card.interface.junction.channels == 8 and ext_card.interface.junction.spatial == 4
    r = _upload(http, admin, write_component(tmp_path / "e.st", net.extractor(), ext_card))
    assert r.status_code == 201, r.text
    assert r.json()["card"]["arch"]["provider"]["distribution"] == PLUGIN
    page = http.get("/ui/components/lab/cnn-extractor")
    assert page.status_code == 200 and f"{PLUGIN} {metadata.version(PLUGIN)}" in page.text
    # Weights of another width than the card's config: refused, nothing stored.
    blobs, rows = live.blob_count(), live.row_count()
    wide_card = card_for(
        name="lab/cnn-wide", role="extractor", arch=ARCH, config={**CFG, "width": 8}, split="block2", input_size=16
    )
    r = _upload(http, admin, write_component(tmp_path / "w.st", net.extractor(), wide_card))
    assert r.status_code == 422 and r.headers["x-upload-check"] == "tensors", r.text
    assert "shape" in r.json()["detail"]
    # A config outside the plugin's bounds is refused before anything is built.
    huge = {**ext_card.model_dump(mode="json"), "name": "lab/cnn-huge"}
    huge["arch"]["config"] = {**CFG, "width": 10**6}
    r = _upload(http, admin, write_component(tmp_path / "h.st", net.extractor(), ext_card, embed=False), huge)
    assert r.status_code == 422 and r.headers["x-upload-check"] == "arch" and "width" in r.json()["detail"]
    assert (live.blob_count(), live.row_count()) == (blobs, rows)


def _foreign_card(name: str, arch: str, provider: dict[str, str] | None) -> dict[str, Any]:
    card = card_for(name=name, role="extractor", arch=ARCH, config=CFG, split="block2", input_size=16)
    out = card.model_dump(mode="json")
    out["arch"]["name"] = arch
    out["arch"]["provider"] = provider
    return out


def test_an_arch_the_registry_lacks_names_what_to_install(live, http: httpx.Client, tmp_path: Path) -> None:
    admin = live.token("admin")
    path = tmp_path / "x.st"
    save_state_dict({"w": torch.zeros(2)}, path, None)
    card = _foreign_card("lab/foreign", "not_installed_arch", {"distribution": "some-dist", "version": "1.0"})
    r = _upload(http, admin, path, card)
    assert r.status_code == 422 and r.json()["code"] == "invalid_upload" and r.headers["x-upload-check"] == "arch"
    assert "pip install some-dist==1.0" in r.json()["detail"] and "not_installed_arch" in r.json()["detail"]
    # No provider on the card: the answer says what is installed.
    r = _upload(http, admin, path, _foreign_card("lab/foreign", "not_installed_arch", None))
    assert r.status_code == 422 and ARCH in r.json()["detail"] and "resnet_cifar" in r.json()["detail"]
    # The name of an installed arch from another distribution is other code: refused.
    r = _upload(http, admin, path, _foreign_card("lab/foreign", ARCH, {"distribution": "other-cnns", "version": "2"}))
    assert r.status_code == 422 and "other-cnns" in r.json()["detail"] and PLUGIN in r.json()["detail"]
    assert live.row_count() == 0
    # A job naming an arch the registry lacks is refused at submission, naming what is installed.
    spec = {
        "name": "j",
        "arch": {"name": "not_installed_arch", "config": {}},
        "tasks": [{"name": "a", "pair": "digits", "pair_task": "a"}],
    }
    r = http.post("/jobs", json={"spec": spec}, headers=_auth(admin))
    assert r.status_code == 422 and "not_installed_arch" in r.text and ARCH in r.text, r.text


def test_train_publish_and_assemble_the_plugins_network(live, client_for) -> None:
    admin = client_for(live, live.token("admin"))
    spec = {
        "name": "cnn",
        "namespace": "jobs",
        "arch": {"name": ARCH, "config": {"width": 4}},
        "tasks": [{"name": "a", "pair": "digits", "pair_task": "a"}],
        "methods": ["RP"],
        "settings": {"steps": 2, "batch_size": 16, "threads": 1, "test_limit": 64},
    }
    job = admin.jobs.submit(spec)
    worker = Worker(client_for(live, live.token("publish", ["jobs"])), name="w", poll_seconds=0.2)
    runner = threading.Thread(target=worker.run, kwargs={"exit_when_idle": True})
    runner.start()
    runner.join(300)
    done = admin.jobs.get(job["id"])
    assert done["status"] == "succeeded", done["error"]
    comps = {c.role: c for c in admin.list(namespace="jobs")}
    assert {"extractor", "head", "aux-rp"} <= set(comps)
    for c in comps.values():
        assert c.card.arch.name == ARCH and c.card.arch.provider is not None
        assert c.card.arch.provider.distribution == PLUGIN
    model = admin.assemble(comps["extractor"].ref, comps["head"].ref)
    out = model(torch.randn(5, comps["extractor"].card.interface.input.channels, 16, 16))
    assert out.shape == (5, len(comps["head"].card.labels)) and torch.isfinite(out).all()


def _fake_plugin(
    root: Path, dist: str, module: str, source: str, value: str | None = None
) -> list[metadata.EntryPoint]:
    """A distribution installed into ``root`` (a dist-info folder and its module), as pip
    lays one out, without installing it for the whole interpreter."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{module} = {value or module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    (found,) = metadata.distributions(path=[str(root)])
    return [ep for ep in found.entry_points if ep.group == GROUP]


@pytest.fixture
def plugin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    before, modules = set(list_archs()), set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    _registry._unregister(set(list_archs()) - before)
    for name in set(sys.modules) - modules:
        if name.startswith("pb_test_plugin"):
            del sys.modules[name]


SOURCE = """
    from partsbin.parts.archs import ArchConfig, register
    from partsbin_example_arch import example_cnn

    class Config(ArchConfig):
        width: int = 4

    register("{first}", Config)(example_cnn)
    {then}
"""


def test_a_broken_plugin_is_skipped_with_a_warning_and_leaves_nothing(plugin_root: Path, caplog) -> None:
    eps = _fake_plugin(
        plugin_root,
        "broken-cnns",
        "pb_test_plugin_broken",
        SOURCE.format(first="half_registered", then="raise RuntimeError('no GPU driver')"),
    )
    with caplog.at_level(logging.WARNING, logger="partsbin.archs"):
        assert load_plugins(eps) == []
    (warning,) = [r for r in caplog.records if r.name == "partsbin.archs"]
    assert "broken-cnns 1.0" in warning.getMessage() and "RuntimeError: no GPU driver" in warning.getMessage()
    assert "half_registered" not in list_archs()  # a plugin is there whole or not at all
    # Loading is idempotent: the same entry point is not tried (nor warned about) again.
    caplog.clear()
    assert load_plugins(eps) == [] and not caplog.records


def test_a_plugin_taking_a_registered_name_is_refused(plugin_root: Path, caplog) -> None:
    eps = _fake_plugin(
        plugin_root,
        "dup-cnns",
        "pb_test_plugin_dup",
        SOURCE.format(first="dup_cnn_a", then="register('resnet_cifar', Config)(example_cnn)"),
    )
    with caplog.at_level(logging.WARNING, logger="partsbin.archs"):
        assert load_plugins(eps) == []
    assert "dup-cnns 1.0" in caplog.text and "'resnet_cifar' is already registered" in caplog.text
    assert provider_of("resnet_cifar").distribution == "partsbin"  # type: ignore[union-attr]
    assert "dup_cnn_a" not in list_archs()


def test_a_callable_entry_point_registers_under_its_distribution(plugin_root: Path) -> None:
    source = textwrap.dedent(SOURCE.format(first="callable_cnn_a", then="")) + textwrap.dedent("""
        def more():
            register("callable_cnn_b", Config)(example_cnn)
    """)
    eps = _fake_plugin(plugin_root, "more-cnns", "pb_test_plugin_callable", source, "pb_test_plugin_callable:more")
    assert load_plugins(eps) == ["callable_cnn_a", "callable_cnn_b"]
    assert str(provider_of("callable_cnn_b")) == "more-cnns 1.0"
    assert load_plugins() == []  # the installed ones are loaded already


def test_a_plugin_imported_first_is_still_recorded_as_its_distributions(tmp_path: Path) -> None:
    code = (
        "import partsbin_example_arch; from partsbin.parts.archs import provider_of; print(provider_of('example_cnn'))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{PLUGIN} {metadata.version(PLUGIN)}"


def test_cli_lists_the_architectures_here_and_the_registrys(live) -> None:
    from typer.testing import CliRunner

    from partsbin.cli import app

    runner = CliRunner()
    here = runner.invoke(app, ["archs", "--json"])
    assert here.exit_code == 0, here.output
    assert {a["name"]: a["distribution"] for a in json.loads(here.output)}[ARCH] == PLUGIN
    there = runner.invoke(app, ["archs", "--registry", "--url", live.url], terminal_width=200)
    assert there.exit_code == 0, there.output
    row = next(line for line in there.output.splitlines() if ARCH in line)
    assert f"{PLUGIN} {metadata.version(PLUGIN)}" in row and "block1, block2" in row
