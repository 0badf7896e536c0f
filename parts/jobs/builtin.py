"""The kinds partsbin ships; importing this module registers them."""

from partsbin.parts.jobs import applications, bridges, evaluate, shared_head, train  # noqa: F401
