"""The CLI as a new user meets it, run as the `partsbin` command against a live registry:
one or two lines for every mistake, work checked before it starts, output for scripts."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from tests.helpers import aux_rp, extractor_card, head_card, network, write_component


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: str | None = None):
    """Run `partsbin ARGS` as a user would (a separate process, output piped)."""
    full_env = {**os.environ, "COLUMNS": "80", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "partsbin", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        input=stdin,
        timeout=120,
    )


def short(done: subprocess.CompletedProcess[str]) -> str:
    """A user mistake: a non-zero exit and an error of at most two lines, no traceback."""
    assert done.returncode != 0, done.stdout
    text = done.stderr.strip()
    assert "Traceback" not in text and 1 <= len(text.splitlines()) <= 2, text
    assert text.startswith("error:"), text
    return text


@pytest.fixture
def env(live, monkeypatch) -> dict[str, str]:
    token = live.token("publish", ["lab"], owner=True)
    monkeypatch.setenv("PARTSBIN_URL", live.url)
    monkeypatch.setenv("PARTSBIN_TOKEN", token)
    monkeypatch.setenv("PARTSBIN_DATA_DIR", str(live.settings.data_dir))
    return {"PARTSBIN_URL": live.url, "PARTSBIN_TOKEN": token}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    net = network(0)
    aux, aux_card = aux_rp()
    card = extractor_card("lab/ext")
    out = {
        "aux": write_component(tmp_path / "rp.safetensors", aux, aux_card),
        "ext_bare": write_component(tmp_path / "bare.safetensors", net.extractor(), card, embed=False),
        "ext_card": tmp_path / "card.json",
        "head": write_component(tmp_path / "head.safetensors", net.head(), head_card("lab/head")),
    }
    out["ext_card"].write_text(card.model_dump_json())
    return out


def test_user_mistakes_are_one_or_two_lines(env, files, tmp_path):
    card = json.loads(files["ext_card"].read_text())
    bad_name = tmp_path / "bad-name.json"
    bad_name.write_text(json.dumps({**card, "name": "Acme/X Y"}))
    no_arch = tmp_path / "no-arch.json"
    no_arch.write_text(json.dumps({k: v for k, v in card.items() if k != "arch"}))
    down = {"PARTSBIN_URL": "http://127.0.0.1:9"}
    # (arguments, environment, what the message must say); independent, so run together.
    cases = [
        (["push", str(files["ext_bare"]), "--card", str(bad_name)], None, "name"),
        (["push", str(files["ext_bare"]), "--card", str(no_arch)], None, "arch"),
        (["push", str(tmp_path / "missing.safetensors")], None, "no such file"),
        (["push", str(files["ext_bare"]), "--card", str(tmp_path / "nope.json")], None, "no such card file"),
        (["pull", "lab/ext", "-o", str(tmp_path / "no-such-folder" / "x.safetensors")], None, "does not exist"),
        (["show", "Acme/X Y"], None, "invalid"),
        (["compatible"], None, "--head"),
        (["yank", "lab/ext", "--reason", "x"], None, "exact version"),
        *[
            (args, down, "http://127.0.0.1:9")
            for args in (["push", str(files["aux"])], ["ls"], ["show", "lab/ext"], ["pull", "lab/ext@1"])
        ],
    ]
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda case: cli(*case[0], env=case[1]), cases))
    for (args, environment, expected), done in zip(cases, runs, strict=True):
        text = short(done)
        assert expected in text, (args, text)
        if environment is down:
            assert "--url" in text, (args, text)
    # --debug (or PARTSBIN_DEBUG=1) shows where it came from.
    debug = cli("--debug", "show", "Acme/X Y")
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert "Traceback" in cli("show", "Acme/X Y", env={"PARTSBIN_DEBUG": "1"}).stderr


def test_yaml_cards_folders_and_repeated_pushes(env, files, tmp_path, live):
    import yaml

    card_yaml = tmp_path / "card.yaml"
    card_yaml.write_text(yaml.safe_dump(json.loads(files["ext_card"].read_text())))
    first = cli("push", str(files["ext_bare"]), "--card", str(card_yaml))
    assert first.returncode == 0 and "published lab/ext@1" in first.stdout, first.stderr
    again = cli("push", str(files["ext_bare"]), "--card", str(files["ext_card"]))
    assert again.returncode == 0 and "already published as lab/ext@1" in again.stdout, again.stderr
    folder = tmp_path / "downloads"
    folder.mkdir()
    pulled = cli("pull", "lab/ext@1", "-o", str(folder))
    assert pulled.returncode == 0, pulled.stderr
    assert (folder / "lab--ext--1.safetensors").read_bytes() == files["ext_bare"].read_bytes()
    assert live.row_count() == 1


def test_messages_in_the_clients_terms(live, files, tmp_path, monkeypatch):
    monkeypatch.setenv("PARTSBIN_URL", live.url)
    text = short(cli("push", str(files["aux"])))
    assert "--token" in text and "PARTSBIN_TOKEN" in text and "Authorization" not in text
    monkeypatch.setenv("PARTSBIN_TOKEN", live.token("publish", ["lab"]))
    text = short(cli("push", str(files["ext_bare"])))
    assert "--card" in text and "form field" not in text
    pickled = tmp_path / "model.pt"
    torch.save(network(0).state_dict(), pickled)
    text = short(cli("push", str(pickled), "--card", str(files["ext_card"])))
    assert "pickle" in text and "safetensors" in text
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    assert "pickle" in short(cli("push", str(legacy), "--card", str(files["ext_card"])))
    # The registry says it too, for HTTP users, and nothing is stored.
    with httpx.Client(base_url=live.url) as http:
        r = http.post(
            "/components",
            files={"file": ("m.pt", pickled.read_bytes())},
            data={"card": files["ext_card"].read_text()},
            headers={"Authorization": f"Bearer {os.environ['PARTSBIN_TOKEN']}"},
        )
    assert r.status_code == 422 and "pickle" in r.json()["detail"]
    assert live.row_count() == 0


def test_work_is_checked_before_it_starts(live, files, tmp_path, monkeypatch):
    monkeypatch.setenv("PARTSBIN_URL", live.url)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: r\nnamespace: lab\ntasks: [{name: a, pair: digits, pair_task: a}]\n"
        "arch: {name: resnet_cifar, config: {depth: 8, width: 4}}\nsettings: {steps: 1000}\n"
    )
    text = short(cli("train", str(spec), "--local"))
    assert "token" in text and "--token" in text
    monkeypatch.setenv("PARTSBIN_TOKEN", live.token("read"))
    text = short(cli("train", str(spec), "--local"))
    assert "namespace 'lab'" in text and "'read'" in text
    out = tmp_path / "m.json"
    text = short(cli("bench", "-e", "lab/ext", "-H", "lab/head", "--json", str(out)))
    assert "--no-post" in text and not out.exists()


def test_posting_failures_keep_the_measurements(live, client_for):
    from partsbin.client.bench import _post
    from partsbin.client.bench_result import BenchResult, Cell

    reg = client_for(live, live.token("read"))
    result = BenchResult(
        ["lab/e@1"], ["lab/h@1"], "batch", 8, [Cell("lab/e@1", "lab/h@1", 0.5, 0.5, 10, (0.2, 0.8), False)]
    )
    error = _post(reg, result)
    assert error is not None and "lab/e@1 + lab/h@1" in error
    assert result.cells[0].accuracy == 0.5


def test_token_commands_refuse_a_database_that_is_not_there(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    text = short(cli("token", "create", "--scope", "admin", cwd=elsewhere, env={"PARTSBIN_DATA_DIR": "partsbin-data"}))
    assert "no registry database at" in text and "partsbin serve" in text
    assert not (elsewhere / "partsbin-data" / "registry.db").exists()
    assert not (elsewhere / "partsbin-data").exists()


def test_token_commands_print_the_database(live, monkeypatch):
    monkeypatch.setenv("PARTSBIN_DATA_DIR", str(live.settings.data_dir))
    done = cli("token", "list")
    assert done.returncode == 0 and f"database: {live.settings.data_dir.resolve()}" in done.stderr


def test_unknown_choices_and_parameters_are_refused(live, env):
    text = cli("ls", "--role", "heads")
    assert text.returncode == 2 and "'heads' is not one of" in text.stderr and "'head'" in text.stderr
    assert cli("jobs", "list", "--status", "done").returncode == 2
    with httpx.Client(base_url=live.url) as http:
        r = http.get("/components", params={"role": "heads"})
        assert r.status_code == 422 and "role" in r.json()["detail"]
        r = http.get("/components", params={"rol": "head"})
        assert r.status_code == 422 and "'rol'" in r.json()["detail"] and "role" in r.json()["detail"]
        assert http.get("/jobs", params={"status": "done"}).status_code == 422
        assert http.get("/components", params={"role": "head", "limit": 5}).status_code == 200


def test_empty_compatible_says_why(env, files):
    assert cli("push", str(files["head"])).returncode == 0
    text = short(cli("compatible", "--head", "lab/head"))
    assert "no aux head" in text and "partsbin bench" in text


def test_show_versions_ls_and_json(env, files, live):
    assert cli("push", str(files["ext_bare"]), "--card", str(files["ext_card"])).returncode == 0
    other = network(1)
    path = files["ext_bare"].with_name("v2.safetensors")
    write_component(path, other.extractor(), extractor_card("lab/ext"))
    assert cli("push", str(path)).returncode == 0
    assert cli("yank", "lab/ext@1", "--reason", "broken").returncode == 0
    shown = cli("show", "lab/ext")
    assert shown.returncode == 0 and "lab/ext@2" in shown.stdout and "junction: 8 channels" in shown.stdout
    assert "{" not in shown.stdout  # rendered, not raw JSON
    raw = json.loads(cli("show", "lab/ext", "--json").stdout)
    assert raw["ref"] == "lab/ext@2" and raw["card"]["role"] == "extractor"
    assert cli("alias", "lab/ext", "stable", "2").returncode == 0
    versions = cli("versions", "lab/ext")
    assert versions.returncode == 0 and "broken" in versions.stdout and "stable" in versions.stdout
    listed = json.loads(cli("versions", "lab/ext", "--json").stdout)
    assert [(c["version"], c["aliases"]) for c in listed] == [(1, []), (2, ["stable"])]
    assert [c["ref"] for c in json.loads(cli("ls", "--json").stdout)] == ["lab/ext@2"]
    assert [c["ref"] for c in json.loads(cli("ls", "--json", "--yanked").stdout)] == ["lab/ext@1", "lab/ext@2"]
    limited = cli("ls", "--yanked", "--limit", "1")
    assert limited.returncode == 0 and "--limit" in limited.stderr
    # Timestamps carry their zone in every response.
    with httpx.Client(base_url=live.url) as http:
        stamps = [
            http.get("/components/lab/ext").json()["created_at"],
            http.get("/components").json()["items"][0]["created_at"],
        ]
    assert all(s.endswith("Z") for s in stamps), stamps


def test_piped_output_is_not_wrapped(env, tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "cache"
    done = cli("cache", "ls", env={"PARTSBIN_CACHE_DIR": str(deep)})
    assert done.returncode == 0 and str(deep) in done.stderr.replace("\n", "") and str(deep) in done.stderr


def test_help_and_version(env):
    assert cli("bench", "-h").returncode == 0 and "--head" in cli("bench", "-h").stdout
    helped = cli("--help")
    assert "--install-completion" in helped.stdout and "Components" in helped.stdout
    from partsbin import __version__

    assert cli("--version").stdout.strip() == f"partsbin {__version__}"


def test_login_logout(live, tmp_path, monkeypatch):
    monkeypatch.setenv("PARTSBIN_URL", live.url)
    token = live.token("publish", ["lab"])
    assert "unknown, revoked or expired" in short(cli("login", "--token", "pb_wrong"))
    done = cli("login", stdin=token + "\n")
    assert done.returncode == 0 and "publish token" in done.stdout, done.stderr
    path = Path(os.environ["PARTSBIN_CONFIG_DIR"]) / "tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["tokens"][live.url] == token
    from partsbin import Registry

    with Registry() as reg:  # no PARTSBIN_TOKEN: the stored one is used
        assert reg.whoami()["namespaces"] == ["lab"]
    assert cli("logout").returncode == 0
    with Registry() as reg:
        assert reg.whoami()["scope"] == "anonymous"


def test_cache_ls_and_prune(env, files, tmp_path):
    assert cli("push", str(files["aux"])).returncode == 0
    assert cli("pull", "lab/rp@1").returncode == 0
    listed = json.loads(cli("cache", "ls", "--json").stdout)
    (entry,) = listed["entries"]
    assert entry["refs"] == ["lab/rp@1"] and entry["role"] == "aux-rp" and entry["size"] == files["aux"].stat().st_size
    assert "lab/rp@1" in cli("cache", "ls").stdout
    kept = cli("cache", "prune", "--older-than", "30")
    assert kept.returncode == 0 and "removed 0 files" in kept.stdout
    for bad in ("-1", "nan", "inf"):  # would take every file, or none: refused, nothing removed
        refused = cli("cache", "prune", "--older-than", bad)
        assert refused.returncode == 2 and "0 or more" in refused.stderr and Path(entry["path"]).exists()
    dry = cli("cache", "prune", "--all", "--dry-run")
    assert "would remove 1 files" in dry.stdout and Path(entry["path"]).exists()
    assert "removed 1 files" in cli("cache", "prune", "--all").stdout and not Path(entry["path"]).exists()
    assert json.loads(cli("cache", "ls", "--json").stdout)["entries"] == []


def test_tables_keep_names_apart(env, tmp_path):
    net = network(0)
    for task in ("a", "b"):
        card = extractor_card(f"lab/run-20261123053501-{task}-extractor")
        path = write_component(
            tmp_path / f"{task}.safetensors", net.extractor() if task == "a" else network(1).extractor(), card
        )
        assert cli("push", str(path)).returncode == 0
    rows = [line for line in cli("ls").stdout.splitlines() if "-extractor" in line or "extractor@" in line]
    assert len(set(rows)) == len(rows) >= 2, rows
    # Whole refs, which can be copied into the next command.
    out = cli("ls").stdout
    assert "lab/run-20261123053501-a-extractor@1" in out and "lab/run-20261123053501-b-extractor@1" in out
    # Every role the API lists is a choice here (bridges included).
    assert cli("ls", "--role", "adapter").returncode == 0


def test_paths_with_nothing_to_show_exits_1_as_compatible_does(env, files):
    assert cli("push", str(files["head"])).returncode == 0
    assert cli("push", str(files["ext_bare"]), "--card", str(files["ext_card"])).returncode == 0
    done = cli("paths", "--extractor", "lab/ext", "--head", "lab/head")
    assert done.returncode == 1 and "no path from lab/ext to lab/head" in short(done)


def test_python_errors_are_partsbin_errors(live, client_for, tmp_path):
    from partsbin import InvalidCard, InvalidFile, InvalidName, MissingFile, PartsbinError, UsageError

    reg = client_for(live, live.token("publish", ["lab"]))
    with pytest.raises(InvalidName):
        reg.info("Acme/X Y")
    with pytest.raises(UsageError):
        reg.compatible()
    with pytest.raises(UsageError):
        reg.yank("lab/ext", "x")
    with pytest.raises(MissingFile):
        reg.push(tmp_path / "nope.safetensors")
    with pytest.raises(InvalidCard, match="name"):
        reg.push(network(0).extractor(), {**extractor_card("lab/e").model_dump(), "name": "Bad Name"})
    (tmp_path / "x.pt").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(InvalidFile, match="pickle"):
        reg.push(tmp_path / "x.pt", extractor_card("lab/e"))
    for cls in (InvalidCard, InvalidFile, InvalidName, MissingFile, UsageError):
        assert issubclass(cls, PartsbinError)
    comp = reg.push(network(0).extractor(), extractor_card("lab/e"))
    assert len(repr(comp)) < 200 and "lab/e@1" in repr(comp)


def test_offline_mode_serves_from_the_cache(live, client_for, monkeypatch):
    from partsbin import NotCached, OfflineMode, Registry, UnvouchedRecombination

    reg = client_for(live, live.token("admin"))
    net = network(0)
    ext = reg.push(net.extractor(), extractor_card("lab/ext"))
    head = reg.push(net.head(), head_card("lab/head"))
    reg.set_alias("lab/head", "stable", 1)
    for ref in (ext.ref, "lab/head", "lab/head:stable"):
        reg.pull(ref)
    # Offline, and pointed at a port where nothing listens: nothing may need the network.
    with Registry(url="http://127.0.0.1:9", offline=True) as offline:
        assert offline.pull(ext.ref).path == reg.pull(ext.ref).path
        assert offline.pull("lab/head").digest == head.digest  # what `latest` meant when last asked
        assert offline.pull("lab/head:stable").digest == head.digest
        # Two parts nothing vouches for (no shared group; offline, no measurement to ask for).
        with pytest.warns(UnvouchedRecombination, match="partsbin bench"):
            model = offline.assemble(ext.ref, "lab/head")
        assert model(torch.rand(4, 1, 16, 16)).shape == (4, 3)
        with pytest.raises(NotCached, match="pull it once while online"):
            offline.pull("lab/never-pulled")
        with pytest.raises(OfflineMode, match="PARTSBIN_OFFLINE"):
            offline.list()
    monkeypatch.setenv("PARTSBIN_OFFLINE", "1")
    monkeypatch.setenv("PARTSBIN_URL", "http://127.0.0.1:9")
    assert cli("pull", "lab/head:stable").returncode == 0
    assert "PARTSBIN_OFFLINE" in short(cli("ls"))
    assert "not in the cache" in short(cli("pull", "lab/other"))


def test_pull_output_writes_where_it_says_and_overwrites_nothing_else(env, files, tmp_path):
    assert cli("push", str(files["head"])).returncode == 0
    folder = tmp_path / "out"
    missing = cli("pull", "lab/head", "-o", f"{folder}/")
    assert missing.returncode == 2 and "no such folder" in short(missing) and not folder.exists()
    folder.mkdir()
    for spelling in (str(folder), f"{folder}/"):
        done = cli("pull", "lab/head", "-o", spelling)
        assert done.returncode == 0, done.stderr
    assert [p.name for p in folder.iterdir()] == ["lab--head--1.safetensors"]
    notes = folder / "notes.txt"
    notes.write_text("my notes")
    refused = cli("pull", "lab/head", "-o", str(notes))
    assert refused.returncode == 2 and "not a .safetensors file" in short(refused) and "--force" in refused.stderr
    assert notes.read_text() == "my notes"
    assert cli("pull", "lab/head", "-o", str(notes), "--force").returncode == 0
    assert notes.read_bytes() == (folder / "lab--head--1.safetensors").read_bytes()
    # A safetensors file there is replaced (a newer pull of the same part).
    assert cli("pull", "lab/head", "-o", str(notes)).returncode == 0
    special = cli("pull", "lab/head", "-o", "/proc/self/mem")
    assert special.returncode == 2 and "not a .safetensors file" in short(special)
    forced = cli("pull", "lab/head", "-o", "/proc/self/mem", "--force")
    assert forced.returncode == 2 and "cannot write /proc/self/mem" in short(forced)
    assert "bug" not in special.stderr + forced.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["lab--head--1.safetensors", "notes.txt"]  # no temporaries


def _command_paths(group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "hidden", False):
            continue
        yield (*prefix, name)
        if hasattr(cmd, "commands"):
            yield from _command_paths(cmd, (*prefix, name))


def test_help_at_80_columns_shows_every_option_name_whole():
    """Rich's help table truncates the option column first when a terminal is narrow:
    a name cut to `--batch-compos…` cannot be typed."""
    import re

    import typer
    from typer.testing import CliRunner

    from partsbin.cli import app

    root = typer.main.get_command(app)
    runner = CliRunner()
    paths = list(_command_paths(root))
    assert len(paths) > 40 and ("webhooks", "add") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"}, terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        assert max(map(len, result.output.splitlines())) <= 80, path
        names = [m.group(1) for m in re.finditer(r"^│ +(?:\* +)?(-\S+)", result.output, re.M)]
        assert names and not [n for n in names if "…" in n], (" ".join(path), names)


def test_train_example_prints_a_spec_of_each_kind_that_validates():
    import yaml
    from typer.testing import CliRunner

    from partsbin.cli import app
    from partsbin.parts.jobs import job_kinds, parse_job_spec

    runner = CliRunner()
    for kind in job_kinds():
        result = runner.invoke(app, ["train", "--example", kind])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("# A") and "partsbin train SPEC --local" in result.output
        spec = parse_job_spec(yaml.safe_load(result.output))
        assert spec.kind == kind and spec.name and spec.namespace
        # Every field is there, at its value or default: a person edits, never looks up.
        assert set(yaml.safe_load(result.output)) == set(type(spec).model_fields)
        assert len(result.output) < 5000
    wrong = runner.invoke(app, ["train", "--example", "trian"])
    assert wrong.exit_code == 2 and "takes one of adapt, evaluate, fct" in wrong.output


def test_each_command_loads_only_its_own_module():
    """``partsbin ls`` must not pay for the job kinds' spec models (partsbin.cli._commands):
    the map names the module that registers every command, and a command run in a new
    process loads that module and no job kind."""
    from partsbin.cli import app
    from partsbin.cli._commands import COMMANDS, MODULES

    registered = {
        (c.name or c.callback.__name__.replace("_", "-")): c.callback.__module__ for c in app.registered_commands
    }
    registered |= {
        g.name: next(c.callback.__module__ for c in g.typer_instance.registered_commands) for g in app.registered_groups
    }
    assert {name: f"partsbin.cli.{module}" for name, module in COMMANDS.items()} == registered
    assert set(COMMANDS.values()) == set(MODULES)

    probe = (
        "import sys; sys.argv = ['partsbin', *sys.argv[1:]]\n"
        "from partsbin.cli._commands import load_for; load_for(sys.argv[1:])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('partsbin.cli.', 'partsbin.parts.jobs'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe, "ls", "--json"], capture_output=True, text=True, check=True
    ).stdout
    assert "partsbin.cli.components" in loaded and "job_verbs" not in loaded and "partsbin.parts.jobs" not in loaded
    everything = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True, check=True)
    assert all(f"partsbin.cli.{m}'" in everything.stdout for m in MODULES)
