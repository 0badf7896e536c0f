"""The README's code blocks do what they say.

- A Python block that starts with an import is a whole program: it runs, against a real
  registry over HTTP, in a fresh folder.
- A Python fragment (it continues from a ``reg`` made above) must parse, and every
  ``reg.METHOD(...)`` it calls must be a ``Registry`` method taking those keywords.
- A YAML block is a job spec: the registry's own parser accepts it.
- Every ``partsbin ...`` command line in a shell or plain block names a command that
  exists, with options that command takes.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(lang: str) -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(2)) for m in BLOCK.finditer(text) if m.group(1) == lang]


def _programs() -> list[tuple[int, str]]:
    return [(n, b) for n, b in _blocks("python") if b.lstrip().startswith(("from ", "import "))]


def _fragments() -> list[tuple[int, str]]:
    return [(n, b) for n, b in _blocks("python") if not b.lstrip().startswith(("from ", "import "))]


def test_the_readme_has_blocks_of_every_kind_checked_here():
    assert len(_programs()) >= 2 and len(_fragments()) >= 2 and len(_blocks("yaml")) >= 2


@pytest.mark.parametrize("line,block", _programs(), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_a_python_program_in_the_readme_runs(line, block, live, tmp_path):
    env = {
        **os.environ,
        "PARTSBIN_URL": live.url,
        "PARTSBIN_TOKEN": live.token("publish", ["acme"], owner=True),
        "PARTSBIN_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"README.md line {line}:\n{done.stderr[-3000:]}"


def test_the_receivers_check_in_the_readme_accepts_a_signed_body_only():
    from partsbin.parts.webhook_signature import sign

    (line, block) = next((n, b) for n, b in _programs() if "verify_signature" in b)
    scope: dict = {}
    exec(compile(block, f"README.md:{line}", "exec"), scope)
    body = b'{"event": "ping"}'
    assert scope["receive"]("s" * 32, body, {"x-partsbin-signature-256": sign("s" * 32, body)})
    assert not scope["receive"]("s" * 32, body + b" ", {"x-partsbin-signature-256": sign("s" * 32, body)})


@pytest.mark.parametrize("line,block", _fragments(), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_a_python_fragment_calls_registry_methods_that_exist(line, block):
    from partsbin import Registry

    tree = ast.parse(block, f"README.md:{line}")
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "reg"
    ]
    assert calls, f"README.md line {line}: no reg.METHOD(...) call to check"
    for call in calls:
        method = getattr(Registry, call.func.attr, None)  # type: ignore[union-attr]
        assert callable(method), f"README.md line {line}: Registry has no method {call.func.attr}"  # type: ignore[union-attr]
        params = inspect.signature(method).parameters
        for kw in call.keywords:
            assert kw.arg in params, f"README.md line {line}: {call.func.attr}() takes no {kw.arg}="  # type: ignore[union-attr]
        positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert len(call.args) <= len(positional) - 1, f"README.md line {line}: too many arguments"


@pytest.mark.parametrize("line,block", _blocks("yaml"), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_a_yaml_block_is_a_job_spec_the_registry_accepts(line, block):
    import yaml

    from partsbin.parts.jobs import parse_job_spec

    spec = yaml.safe_load(block)
    spec.setdefault("namespace", "lab")
    parse_job_spec(spec)


def _command_lines() -> list[tuple[int, str]]:
    out = []
    for lang in ("bash", ""):
        for line, block in _blocks(lang):
            joined = block.replace("\\\n", " ")
            for offset, text in enumerate(joined.splitlines()):
                text = text.strip()
                if text.startswith("partsbin ") and not text.startswith("partsbin/"):
                    out.append((line + offset + 1, text.split("#")[0].strip()))
    return out


def test_every_partsbin_command_in_the_readme_exists_with_its_options():
    from typer.main import get_command

    from partsbin.cli import app

    root = get_command(app)
    lines = _command_lines()
    assert len(lines) >= 20
    for line, text in lines:
        words = shlex.split(text.replace("|", " "))[1:]
        command = root
        for word in list(words):
            sub = getattr(command, "commands", {}).get(word)
            if sub is None:
                break
            command, words = sub, words[1:]
        if command is root and all(w.startswith("-") for w in words):
            continue  # the root's own options (--version, --debug, -h)
        assert command is not root, f"README.md line {line}: no command in {text!r}"
        if hasattr(command, "commands"):
            continue  # a group named alone (its commands are listed elsewhere)
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for word in words:
            option = word.split("=")[0]
            if option.startswith("-") and re.fullmatch(r"--?[a-zA-Z][\w-]*", option):
                assert option in known, f"README.md line {line}: {command.name} takes no {option}"
