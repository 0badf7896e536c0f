"""Tokens stored by ``partsbin login``, one per registry URL, in the user's config folder
(``$PARTSBIN_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/partsbin``, else ``~/.config/partsbin``).

The file is written with mode 0600 and replaced atomically, as ``huggingface-cli login``
keeps its token. A token given explicitly or in ``PARTSBIN_TOKEN`` always wins.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["config_dir", "credentials_path", "stored_token", "store_token", "forget_token"]


def config_dir() -> Path:
    # Read when needed, not at import, so tests and users can set it at any time.
    env = os.environ.get("PARTSBIN_CONFIG_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "partsbin"


def credentials_path() -> Path:
    return config_dir() / "tokens.json"


def _key(url: str) -> str:
    return url.rstrip("/")


def _read() -> dict[str, str]:
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # an unreadable file is treated as empty; `login` rewrites it
    return {k: v for k, v in data.get("tokens", {}).items() if isinstance(k, str) and isinstance(v, str)}


def _write(tokens: dict[str, str]) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tokens.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"tokens": tokens}, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stored_token(url: str) -> str | None:
    return _read().get(_key(url))


def store_token(url: str, token: str) -> Path:
    tokens = _read()
    tokens[_key(url)] = token
    _write(tokens)
    return credentials_path()


def forget_token(url: str) -> bool:
    tokens = _read()
    if tokens.pop(_key(url), None) is None:
        return False
    _write(tokens)
    return True
