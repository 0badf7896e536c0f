"""The registry's web pages: server-rendered Jinja2 templates over the API's own queries
(``registry/crud``), a stylesheet and a few lines of plain JavaScript; no build step.

``/`` lists components; ``/ui/...`` holds a component's page (card, versions, file,
snippet, compatible parts, evaluations, lineage), groups with their heatmaps,
evaluations, jobs, webhooks (for their managers), and the sign-in form used when anonymous reads are off.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from partsbin.registry.web import auth, components, evaluations, groups, jobs, webhooks
from partsbin.registry.web.render import HERE

__all__ = ["mount_web"]


def mount_web(app: FastAPI) -> None:
    for module in (auth, components, groups, evaluations, jobs, webhooks):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="static")
