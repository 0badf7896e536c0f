"""/archs: the architectures this registry builds, built-in and from plugins
(the ``partsbin.archs`` entry-point group), and the distribution that provides each."""

from __future__ import annotations

from fastapi import APIRouter

from partsbin.registry.api.schemas import ArchOut

router = APIRouter(tags=["architectures"])


# A plain def: FastAPI runs it in a worker thread, so while the architectures (and
# PyTorch) are still loading in the background (registry/server.py) this request waits
# on the import lock and the event loop keeps answering the others.
@router.get("/archs", response_model=list[ArchOut], summary="Every architecture: provider, split points, config schema")
def list_archs() -> list[ArchOut]:
    from partsbin.parts.archs import arch_info

    return [
        ArchOut(
            name=a.name,
            distribution=a.distribution,
            version=a.version,
            split_points=None if a.split_points is None else list(a.split_points),
            default_split=a.default_split,
            config_schema=a.config_schema,
        )
        for a in arch_info()
    ]
