"""The root of every error partsbin raises on purpose.

It lives in the shared core so that the core's own errors (an invalid name, say) are
``PartsbinError`` too: catching it catches every user mistake the client reports. The
client's hierarchy is drawn in :mod:`partsbin.client.errors`.
"""

from __future__ import annotations

__all__ = ["PartsbinError", "InvalidCard", "InvalidSpec"]


class PartsbinError(Exception):
    pass


class InvalidCard(PartsbinError, ValueError):
    """A component card that does not validate; the message names each field and why."""


class InvalidSpec(PartsbinError, ValueError):
    """A job spec (or result) that does not validate; the message names each bad field.

    Here rather than beside the job kinds (:mod:`partsbin.parts.jobs.kinds` re-exports it):
    the client's errors name it, and importing the kinds loads every spec model."""
