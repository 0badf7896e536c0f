"""Bridges on the client side: ``Registry.paths``, ``Registry.stitch`` and the chain that
``Registry.assemble(..., via=...)`` builds (DESIGN.md, "Bridges" and "Paths")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from partsbin.client.errors import Incompatible, UsageError
from partsbin.parts.card import BRIDGE_ROLES, Card, Junction, bridge_space

if TYPE_CHECKING:
    from torch import nn

    from partsbin.client.component import Component
    from partsbin.client.registry import Registry

__all__ = ["no_path", "check_chain", "bridged_extractor"]


def _describe(j: Junction) -> str:
    from partsbin.client.assemble import describe_junction

    return describe_junction(j)


def no_path(ext: Component, head: Component) -> Incompatible:
    return Incompatible(
        f"no path from extractor {ext.ref} ({_describe(ext.card.interface.junction)}) to head {head.ref} "
        f"(takes {_describe(head.card.interface.junction)}): they share no group and no bridge is known; "
        f"make one with `partsbin stitch --extractor {ext.ref} --head {head.ref} --name NS/NAME` "
        "(Registry.stitch)"
    )


def check_chain(ext: Component, head: Component, bridges: list[Component]) -> None:
    """Each bridge starts where the previous one ended (the first at the extractor), and
    the last ends at the head, a group the head belongs to, or an extractor's space."""
    where = ext.digest
    for b in bridges:
        card: Card = b.card
        if card.role not in BRIDGE_ROLES or card.bridge is None:
            raise Incompatible(f"{b.ref} is a {card.role}, not a bridge (an adapter or transform)")
        if card.bridge.source != where:
            raise Incompatible(f"{b.ref} bridges from {card.bridge.source}, not from {where}: the chain is broken")
        if bridge_space(card.role, card.bridge) == "embedding":
            raise Incompatible(
                f"{b.ref} is an FCT transform of pooled embeddings (for a stored gallery), not of the junction "
                "features a head takes; use Registry.transform_gallery on stored embeddings, or make a transform "
                "of junction features (`partsbin fct --space junction`)"
            )
        where = card.bridge.to
    if where != head.digest and where not in head.card.compat.anchors:
        # Into another extractor's space: fine when that space meets the head; the registry's
        # /paths says whether it does (a shared group), so only the interface is checked here.
        j, h = bridges[-1].card.interface.junction, head.card.interface.junction
        if j.channels != h.channels or j.layout != h.layout:
            raise Incompatible(
                f"the last bridge {bridges[-1].ref} gives {_describe(j)}; {head.ref} takes {_describe(h)}"
            )


def bridged_extractor(registry: Registry, ext: Component, bridges: list[Component], device: Any) -> nn.Module:
    """The extractor followed by its bridges, as one module from images to the features
    the head takes. A transform with side-information also runs its side-info model on
    the images (FCT's side-information is computed from the image, not the features)."""
    from torch import nn

    from partsbin.parts.archs.bridges import WithSideInfo

    stages: list[nn.Module] = [ext.build(device)]
    for b in bridges:
        side = b.card.bridge.side_info if b.card.bridge is not None else None
        if side is None:
            stages.append(b.build(device))
            continue
        before = stages[0] if len(stages) == 1 else nn.Sequential(*stages)
        stages = [WithSideInfo(before, registry.pull(side).build(device).eval(), b.build(device))]
    return stages[0] if len(stages) == 1 else nn.Sequential(*stages)


def resolve_via(registry: Registry, ext: Component, head: Component, via: Any) -> list[Component]:
    """The bridges of ``via``: ``"auto"`` takes the best path /paths lists; a list names them."""
    if via == "auto":
        found = registry.paths(extractor=ext.ref, head=head.ref)["paths"]
        if not found:
            raise no_path(ext, head)
        usable = [p for p in found if p.get("composable", True)]
        if not usable:
            raise Incompatible(
                f"{ext.ref} reaches {head.ref} only through FCT transforms of pooled embeddings, which are for "
                "retrieval (Registry.transform_gallery), not junction features a head takes; make an adapter "
                f"with `partsbin stitch --extractor {ext.ref} --head {head.ref} --name NS/NAME`, or a transform "
                "of junction features with `partsbin fct --space junction`"
            )
        refs = usable[0]["bridges"]
    elif isinstance(via, (list, tuple)):
        refs = list(via)
    else:
        raise UsageError(f"via is 'auto' or a list of bridge refs, not {via!r}")
    bridges = [registry.pull(r) for r in refs]
    if bridges:
        check_chain(ext, head, bridges)
    return bridges


def transform_embeddings(transform: nn.Module, old: Any, side: Any = None, batch_size: int = 4096) -> Any:
    """FCT without backfilling: new-space embeddings from stored old embeddings (and their
    side-information), in batches, with no backbone run. Accepts (N, C) or (N, C, 1, 1),
    or junction features (N, C, H, W) for a transform of junction features; returns the
    same rank. BatchNorm uses the transform's running statistics, so that an
    embedding never depends on the batch it was transformed in."""
    import torch

    from partsbin.parts.archs.bridges import with_side_info

    flat = old.dim() == 2
    x = old[:, :, None, None] if flat else old
    if side is not None:
        s = side[:, :, None, None] if side.dim() == 2 else side
        if len(s) != len(x):
            raise UsageError(f"{len(x)} embeddings but {len(s)} side-information vectors")
        x = with_side_info(x, s)
    transform.eval()
    with torch.no_grad():
        out = torch.cat([transform(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    return out[:, :, 0, 0] if flat else out


def bench_path(
    registry: Registry,
    extractor: str,
    head: str,
    via: Any = "auto",
    *,
    data: Any = None,
    batch_size: int = 256,
    shuffle_seed: int = 0,
    post: bool = True,
) -> dict[str, Any]:
    """Measure a composed path as the benchmark measures a direct pair: the extractor's
    test set, batch-statistics BatchNorm, batches of the classes the pair shares. Posted
    (``post``) as metric ``bridged_recombination_accuracy`` with ``details.via`` naming
    the bridges' digests, which is how ``/paths`` finds the measurement."""
    from torch import nn

    from partsbin.client.eval_data import test_set
    from partsbin.parts.evaluation import EvalSettings, evaluate_pair
    from partsbin.parts.metrics import shared_classes

    ext, hd = registry.pull(extractor), registry.pull(head)
    bridges = resolve_via(registry, ext, hd, via)
    if not bridges:
        raise UsageError(f"{ext.ref} meets {hd.ref} directly: measure it with Registry.bench")
    if post:
        registry.check_can_publish(None, "posting the result as an evaluation (post=False to skip)")
    dataset, images = test_set(ext, data)
    settings = EvalSettings(batch_size=batch_size, shuffle_seed=shuffle_seed)
    labels = hd.card.labels
    acc = evaluate_pair(
        nn.Sequential(bridged_extractor(registry, ext, bridges, "cpu")), hd.build(), images, labels, settings
    )
    result = {
        "extractor": ext.ref,
        "head": hd.ref,
        "via": [b.ref for b in bridges],
        "accuracy": acc.restricted,
        "unrestricted": acc.unrestricted,
        "samples": acc.n,
        "dataset": dataset,
    }
    if post:
        registry.post_evaluation(
            extractor=ext.ref,
            head=hd.ref,
            dataset=dataset,
            value=acc.restricted,
            samples=acc.n,
            bn_mode="batch",
            batch_size=batch_size,
            metric="bridged_recombination_accuracy",
            details={"via": [b.digest for b in bridges], "unrestricted": acc.unrestricted, **settings.as_dict()},
            classes=len(shared_classes(images.classes, labels)),
            data_digest=images.data_digest,
        )
    return result
