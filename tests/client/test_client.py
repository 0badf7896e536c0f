"""The Python client against a live registry."""

from __future__ import annotations

import hashlib

import pytest
import torch

from partsbin import ComponentNotFound, DigestMismatch, Incompatible, InvalidUpload, Registry, Unauthorized
from partsbin.parts.archs import build
from partsbin.parts.describe import card_for
from tests.helpers import CFG, aux_rp, extractor_card, head_card, network


@pytest.fixture
def reg(live):
    with Registry(url=live.url, token=live.token("admin")) as r:
        yield r


def test_env_fallback(live, monkeypatch):
    monkeypatch.setenv("PARTSBIN_URL", live.url)
    monkeypatch.setenv("PARTSBIN_TOKEN", live.token("admin"))
    with Registry() as r:
        assert r.url == live.url
        aux, card = aux_rp()
        assert r.push(aux, card).ref == "lab/rp@1"


def test_split_push_compatible_assemble_equals_original(reg):
    """End to end: a split network comes back whole from the registry."""
    aux, aux_card = aux_rp()
    anchor = reg.push(aux, aux_card).digest
    net = network(4)
    ext = reg.push(net.extractor(), extractor_card("lab/ext", [anchor]))
    head = reg.push(net.head(), head_card("lab/head", [anchor]))
    assert [i["component"].ref for i in reg.compatible(head=head.ref)] == [ext.ref]
    assert {i["component"].ref for i in reg.compatible(extractor=ext.ref)} == {head.ref, "lab/rp@1"}
    model = reg.assemble(ext.ref, head.ref, bn_mode="running")
    x = torch.randn(6, CFG["in_chans"], 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
        # Batch-statistics mode (the default) normalises with the batch, so it differs
        # from running mode, and it never touches the running buffers.
        before = {k: v.clone() for k, v in model.state_dict().items()}
        batch_model = reg.assemble(ext.ref, head.ref)
        assert batch_model.bn_mode == "batch"
        out = batch_model(x)
        assert not torch.allclose(out, net(x))
        assert all(torch.equal(before[k], v) for k, v in batch_model.state_dict().items())
        with pytest.warns(RuntimeWarning, match="batch of 1"):
            batch_model(x[:1])
    assert model.labels == ["a", "b", "c"]


def test_pull_cache_verifies_and_transfers_once(live, reg):
    aux, card = aux_rp()
    pushed = reg.push(aux, card)
    first = reg.pull(pushed.ref)
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == pushed.hex
    requests = []
    reg._http.event_hooks["request"] = [lambda r: requests.append(str(r.url.path))]
    second = reg.pull("lab/rp@1")
    assert second.path == first.path
    assert requests == [], "an exact version already cached needs no request"
    reg.pull("lab/rp")  # latest: one metadata lookup, no file transfer
    assert requests == ["/components/lab/rp"]
    reg.pull(pushed.digest)
    assert requests == ["/components/lab/rp"]
    assert torch.equal(second.build().state_dict()["fc.weight"], aux.state_dict()["fc.weight"])


def test_pull_rejects_corrupted_bytes(live, tmp_path):
    with Registry(url=live.url, token=live.token("admin"), cache_dir=tmp_path / "c1") as reg:
        aux, card = aux_rp()
        pushed = reg.push(aux, card)
    blob = next(p for p in (live.settings.data_dir / "blobs").rglob(pushed.hex))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with Registry(url=live.url, cache_dir=tmp_path / "c2") as fresh:
        with pytest.raises(DigestMismatch, match="expected sha256:" + pushed.hex):
            fresh.pull(pushed.ref)
        assert not any((tmp_path / "c2" / "blobs").rglob(pushed.hex))


def test_typed_errors_carry_the_server_message(live, reg):
    with pytest.raises(ComponentNotFound, match="no component named lab/none") as exc:
        reg.info("lab/none")
    assert exc.value.status_code == 404 and exc.value.code == "not_found" and exc.value.request_id
    with Registry(url=live.url) as anon:
        aux, card = aux_rp()
        with pytest.raises(Unauthorized, match="needs a token"):
            anon.push(aux, card)
    net = network(0)
    with pytest.raises(InvalidUpload, match="not in this registry"):
        reg.push(net.extractor(), extractor_card("lab/e", ["sha256:" + "2" * 64]))


def test_assemble_refuses_different_feature_interfaces(reg):
    narrow = network(0)
    wide_cfg = {**CFG, "width": 8}
    wide = build("resnet_cifar", **wide_cfg)
    e = reg.push(narrow.extractor(), extractor_card("lab/narrow"))
    h = reg.push(
        wide.head(),
        card_for(
            name="lab/widehead",
            role="head",
            arch="resnet_cifar",
            config=wide_cfg,
            split="stage2",
            labels=["a", "b", "c"],
        ),
    )
    with pytest.raises(
        Incompatible, match=r"extractor lab/narrow@1 gives 8 channels at 8x8, head lab/widehead@1 takes 16 channels"
    ):
        reg.assemble(e.ref, h.ref)
    with pytest.raises(Incompatible, match="not an extractor"):
        reg.assemble(h.ref, h.ref)


def test_push_file_and_cli(live, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from partsbin.cli import app
    from tests.helpers import write_component

    monkeypatch.setenv("PARTSBIN_URL", live.url)
    monkeypatch.setenv("PARTSBIN_DATA_DIR", str(live.settings.data_dir))
    runner = CliRunner()
    created = runner.invoke(app, ["token", "create", "--scope", "publish", "-n", "lab", "--owner"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("pb_")
    monkeypatch.setenv("PARTSBIN_TOKEN", token)
    aux, card = aux_rp()
    path = write_component(tmp_path / "rp.safetensors", aux, card)
    r = runner.invoke(app, ["push", str(path)])
    assert r.exit_code == 0 and "lab/rp@1" in r.stdout, r.output
    r = runner.invoke(app, ["pull", "lab/rp@1", "-o", str(tmp_path / "out.safetensors")])
    assert r.exit_code == 0 and (tmp_path / "out.safetensors").read_bytes() == path.read_bytes(), r.output
    assert "lab/rp@1" in runner.invoke(app, ["ls"]).stdout
    assert '"aux-rp"' in runner.invoke(app, ["show", "lab/rp", "--json"]).stdout
    assert runner.invoke(app, ["alias", "lab/rp", "stable", "1"]).exit_code == 0
    assert runner.invoke(app, ["yank", "lab/rp@1", "--reason", "bad"]).exit_code == 0
    assert "lab/rp@1" not in runner.invoke(app, ["ls"]).stdout
    listed = runner.invoke(app, ["token", "list"])
    assert "publish" in listed.stdout and token not in listed.stdout
    assert runner.invoke(app, ["token", "revoke", "1"]).exit_code == 0


def test_every_public_client_method_says_its_arguments_returns_and_errors():
    """The client's surface as huggingface_hub keeps its own: explicit keyword arguments
    (no ``**kwargs``), a return type, and a docstring saying what it raises."""
    import inspect

    from partsbin import Job, Registry

    for cls in (Registry, Job):
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("_"):
                continue
            sig = inspect.signature(member)
            where = f"{cls.__name__}.{name}"
            assert all(p.kind is not p.VAR_KEYWORD for p in sig.parameters.values()), f"{where} takes **kwargs"
            assert sig.return_annotation is not inspect.Signature.empty, f"{where} has no return type"
            doc = inspect.getdoc(member) or ""
            assert doc, f"{where} has no docstring"
            if sig.return_annotation not in ("None", None) and name not in ("close",):
                assert "Raises:" in doc or "Returns:" in doc or len(sig.parameters) == 1, f"{where}: say Returns/Raises"


def test_partsbin_exports_exactly_the_client_errors():
    """partsbin's export table, its ``__all__``, the imports mypy reads and
    ``partsbin.client.errors.__all__`` agree: an error added to one list and not the
    others fails here. (partsbin cannot build its list from client.errors: ``import
    partsbin`` would then import partsbin.client, which the server and the shared core
    must not, tests/test_packaging.py::test_import_rules.)"""
    import ast
    import inspect

    import partsbin
    from partsbin.client import errors
    from partsbin.client.errors import PartsbinError

    table = partsbin._EXPORTS
    assert sorted(partsbin.__all__) == sorted(["__version__", *table])
    exported = {name for name, module in table.items() if module == errors.__name__}
    assert exported == set(errors.__all__), exported ^ set(errors.__all__)
    # Every error the module defines or re-exports is in its list.
    defined = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, (PartsbinError, Warning))}
    assert defined == set(errors.__all__), defined ^ set(errors.__all__)
    # What mypy sees (the imports under TYPE_CHECKING) is what partsbin resolves, from the same modules.
    tree = ast.parse(inspect.getsource(partsbin))
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING")
    seen = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert seen == table
    assert all(getattr(partsbin, name) is getattr(errors, name) for name in errors.__all__)


def test_assemble_warns_about_parts_nothing_vouches_for_and_strict_refuses_them(live, client_for):
    import warnings

    from partsbin import Incompatible, UnvouchedRecombination
    from tests.helpers import aux_rp, extractor_card, head_card, network, own_test_digest

    reg = client_for(live, live.token("admin"))
    stranger = client_for(live, live.token("publish", ["spam"]))
    rp = reg.push(*aux_rp())
    grouped_ext = reg.push(network(1).extractor(), extractor_card("lab/g", [rp.digest]))
    grouped_head = reg.push(network(2).head(), head_card("lab/gh", [rp.digest]))
    loner = reg.push(network(3).extractor(), extractor_card("lab/loner"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.assemble(grouped_ext.ref, grouped_head.ref)  # a shared group vouches for them
    with pytest.warns(UnvouchedRecombination, match=r"partsbin bench -e lab/loner@1 -H lab/gh@1.*partsbin paths"):
        reg.assemble(loner.ref, grouped_head.ref)
    with pytest.raises(Incompatible, match="share no compatibility group"):
        reg.assemble(loner.ref, grouped_head.ref, strict=True)
    body = dict(extractor=loner.ref, head=grouped_head.ref, dataset="d", value=0.9, samples=500, bn_mode="batch")
    # A stranger's number on the right data vouches for nothing; a trusted one does, on that data only.
    stranger.post_evaluation(**body, data_digest=own_test_digest(loner.name))
    reg.post_evaluation(**body, data_digest="sha256:" + "0" * 64)
    with pytest.raises(Incompatible):
        reg.assemble(loner.ref, grouped_head.ref, strict=True)
    reg.post_evaluation(**body, data_digest=own_test_digest(loner.name))
    assert reg.assemble(loner.ref, grouped_head.ref, strict=True) is not None


def test_a_client_of_an_http_registry_builds_no_tls_context(live, client_for):
    from partsbin.client._http import LazyTLSTransport

    reg = client_for(live)
    reg.whoami()
    transport = reg._http._transport
    assert isinstance(transport, LazyTLSTransport) and transport._tls is None
