"""The distribution installs one import name, its parts import each other only in the
allowed directions, and a part whose extra is missing says which extra to install."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
# The folders that install as `partsbin` and its subpackages.
FOLDERS = ("partsbin", "client", "registry", "trainer", "parts", "migrations")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of the files git knows (as from an sdist): nothing left over from
    # earlier builds gets in, and the checkout gets no build/ folder.
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("partsbin-*.whl")
    return found


def _installed_name(folder: str, relative: Path) -> str:
    base = "partsbin" if folder == "partsbin" else f"partsbin/{folder}"
    return f"{base}/{relative.as_posix()}"


def test_wheel_holds_one_top_level_name_and_every_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"partsbin", f"partsbin-{metadata.version('partsbin')}.dist-info"}
    for folder in FOLDERS:
        for source in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in source.parts:
                continue
            assert _installed_name(folder, source.relative_to(ROOT / folder)) in names, source
    assert "partsbin/migrations/script.py.mako" in names
    # The web pages' templates and static files travel with the package.
    for folder in ("templates", "static"):
        for source in (ROOT / "registry" / "web" / folder).iterdir():
            assert f"partsbin/registry/web/{folder}/{source.name}" in names, source


def test_plain_install_runs_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = textwrap.dedent(
        """
        import json, partsbin, partsbin.cli, partsbin.registry.main, partsbin.trainer.run, partsbin.migrations
        from partsbin import Registry
        print(json.dumps([m.__file__ for m in (partsbin, partsbin.registry.main, partsbin.trainer.run,
                                               partsbin.migrations, __import__("partsbin.client.registry").client.registry)]))
        """
    )
    # From an unrelated folder, with the unpacked wheel first on the path: what a plain
    # `pip install partsbin` gives, whatever the editable install of this checkout says.
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for path in json.loads(done.stdout):
        assert Path(path).is_relative_to(site), path


def test_a_users_own_top_level_modules_do_not_shadow_partsbin(tmp_path: Path) -> None:
    for name in ("client", "registry", "trainer", "parts", "migrations"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('the user module was imported')\n")
    code = "import partsbin.cli, partsbin.registry.db.migrate, partsbin.trainer.run; from partsbin import Registry; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


IMPORT_ALL = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    package = importlib.import_module(sys.argv[1])
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not info.name.endswith("__main__") and ".migrations.versions." not in info.name and info.name != "partsbin.migrations.env":
            importlib.import_module(info.name)
    print(json.dumps(sorted({".".join(m.split(".")[:2]) for m in sys.modules if m.startswith("partsbin.")})))
    """
)

# The arrows of docs/architecture.md: what each part may import of the others.
ALLOWED = {
    "partsbin.parts": set(),
    "partsbin.client": {"partsbin.parts"},
    "partsbin.registry": {"partsbin.parts", "partsbin.migrations"},
    "partsbin.trainer": {"partsbin.parts", "partsbin.client"},
}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_rules(package: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL, package], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    imported = set(json.loads(done.stdout)) - {package}
    assert imported <= ALLOWED[package], f"{package} imports {sorted(imported - ALLOWED[package])}"


BLOCK = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    class Missing(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == sys.argv[1]:
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, Missing())
    try:
        exec(sys.argv[2])
    except ImportError as exc:
        print(type(exc).__name__, exc)
    """
)


@pytest.mark.parametrize(
    ("missing", "code", "extra"),
    [
        ("fastapi", "import partsbin.registry.main", "server"),
        ("sqlalchemy", "import partsbin.registry", "server"),
        ("sklearn", "from partsbin.parts.data import load_source; load_source('digits', 'test')", "train"),
        (
            "matplotlib",
            "from partsbin.client.bench_result import BenchResult; BenchResult([], [], 'batch', 1, []).heatmap('x.png')",
            "train",
        ),
    ],
)
def test_a_missing_extra_is_named(missing: str, code: str, extra: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", BLOCK, missing, code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.startswith("MissingExtra"), done.stdout + done.stderr
    assert f"pip install 'partsbin[{extra}]'" in done.stdout


def test_the_client_works_without_the_server_extra(tmp_path: Path) -> None:
    code = "from partsbin import Registry; import partsbin.client.bench, partsbin.cli; print('ok')"
    done = subprocess.run([sys.executable, "-c", BLOCK, "fastapi", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stdout + done.stderr


def test_version_is_read_from_the_distribution() -> None:
    from partsbin import __version__
    from partsbin.cli import app

    assert __version__ == metadata.version("partsbin")
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"partsbin {__version__}"


def test_tools_that_read_files_find_partsbin_as_it_installs(tmp_path: Path) -> None:
    """Type checkers and IDEs resolve imports by looking for files on the path, not by
    running import hooks: some entry of a plain interpreter's sys.path must hold
    partsbin/trainer/loop.py and the py.typed marker (a wheel's site-packages, or the
    strict editable install's link tree), and mypy must follow it from a user's file."""
    code = "import json, sys; print(json.dumps(sys.path))"
    done = subprocess.run([sys.executable, "-S", "-c", "import site; site.main(); " + code], cwd=tmp_path,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    roots = [Path(p) for p in json.loads(done.stdout) if p and (Path(p) / "partsbin" / "trainer" / "loop.py").is_file()]
    assert roots, "no sys.path entry holds partsbin/trainer/loop.py: an import-hook editable install? run `make setup`"
    assert (roots[0] / "partsbin" / "py.typed").is_file()
    user = tmp_path / "mine.py"
    user.write_text("from partsbin.parts.metrics import wilson_interval\n\nreveal_type(wilson_interval)\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental", str(user)],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert "def (correct: int, n: int, z: float =) -> tuple[float, float]" in done.stdout, done.stdout
