"""The roles a component can have: one list, read by the card, the API's filters and the
CLI's choices (imports nothing, so ``partsbin --help`` stays fast)."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["Role", "ROLES"]

Role = Literal["extractor", "head", "aux-rp", "aux-dcc", "init", "adapter", "transform", "side-info"]
ROLES: tuple[str, ...] = get_args(Role)
