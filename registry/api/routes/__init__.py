"""All routers, gathered in one place."""

from fastapi import APIRouter

from . import compatible, components, groups, health, tokens

api_router = APIRouter()
for _module in (components, compatible, groups, tokens, health):
    api_router.include_router(_module.router)
