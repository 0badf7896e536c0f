"""``/docs`` and ``/openapi.json``: the API's description, readable by whoever may read
the registry (``PARTSBIN_ANONYMOUS_READ``), and Swagger UI served from the package's own
files (the ``fastapi-offline`` distribution's copy), so ``/docs`` works on a machine
without internet.

A browser signed in to the pages carries the token cookie, so the same reader who sees
the pages sees the description; a program sends ``Authorization: Bearer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from partsbin.registry.crud.tokens import Principal
from partsbin.registry.web.auth import web_principal
from partsbin.registry.web.render import LoginRequired

__all__ = ["router", "mount_docs_assets", "ASSETS"]

ASSETS = "/docs/assets"
router = APIRouter(include_in_schema=False)


def _reader(request: Request) -> Principal | None:
    try:
        return web_principal(request, request.app.state.settings)
    except LoginRequired:
        return None


Reader = Annotated[Principal | None, Depends(_reader)]


@router.get("/openapi.json")
def openapi(request: Request, reader: Reader) -> Response:
    if reader is None:
        raise LoginRequired("this registry needs a token to read its API description: send 'Authorization: Bearer'")
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def docs(request: Request, reader: Reader) -> Response:
    if reader is None:
        return RedirectResponse("/ui/login?next=/docs", status_code=303)
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{request.app.title} API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
    )


def mount_docs_assets(app: FastAPI) -> None:
    import fastapi_offline

    app.mount(ASSETS, StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"), name="docs-assets")
