"""Using stored parts together: ``Registry.assemble`` (with the check that something
vouches for the pair) and ``transform_gallery``."""

from __future__ import annotations

import builtins
import warnings
from typing import TYPE_CHECKING, Literal, cast

from partsbin.client._base import RegistryBase
from partsbin.client.component import Component
from partsbin.client.errors import Incompatible, UnvouchedRecombination, UsageError

# torch is imported where a module is built or run, not here.
if TYPE_CHECKING:
    import torch

    from partsbin.client.assemble import AssembledModel
    from partsbin.client.registry import Registry

__all__ = ["RecombinationMethods"]


class RecombinationMethods(RegistryBase):
    """``Registry``'s methods that build models from stored parts."""

    def transform_gallery(
        self,
        transform: str,
        old_embeddings: torch.Tensor,
        side_info: torch.Tensor | None = None,
        *,
        batch_size: int = 4096,
    ) -> torch.Tensor:
        """FCT: map a stored gallery of old embeddings (and their side-information vectors)
        into the new model's space through a stored ``transform``, in batches, without
        running any backbone (no backfilling).

        Args:
            transform: ref of a ``transform`` component.
            old_embeddings: (N, C) or (N, C, 1, 1); junction features (N, C, H, W) for a
                transform of junction features.
            side_info: (N, D) or (N, D, 1, 1), for a transform that takes side-information.
            batch_size: embeddings per batch.

        Returns:
            The new-space embeddings, shaped as given.

        Raises:
            UsageError: not a transform, or embeddings of the wrong kind or width.
        """
        from partsbin.client.bridges import transform_embeddings
        from partsbin.parts.card import bridge_space

        comp = self.pull(transform)
        if comp.card.role != "transform":
            raise UsageError(f"{comp.ref} is a {comp.card.role}, not a transform")
        # The MLP's ReLUs do not commute with pooling: each transform maps what it was fitted on.
        maps = old_embeddings.dim() == 4 and old_embeddings.shape[2:].numel() > 1
        space = bridge_space("transform", comp.card.bridge) if comp.card.bridge is not None else "embedding"
        if maps != (space == "junction"):
            kind = "junction features (N, C, H, W)" if maps else "pooled embeddings"
            raise UsageError(
                f"{comp.ref} is a transform of {'junction features' if space == 'junction' else 'pooled embeddings'}; "
                f"these are {kind}"
            )
        config = comp.card.arch.config
        takes = int(config.get("in_chans", 0)) + int(config.get("side_chans", 0) or 0)
        given = int(old_embeddings.shape[1]) + (int(side_info.shape[1]) if side_info is not None else 0)
        if takes != given:
            raise UsageError(
                f"{comp.ref} takes {takes} channels (old embedding + side-information); these give {given}"
            )
        return transform_embeddings(comp.build(), old_embeddings, side_info, batch_size=batch_size)

    # -- recombination -----------------------------------------------------------------
    def _vouch(self, ext: Component, hd: Component, *, strict: bool) -> None:
        if _vouched(cast("Registry", self), ext, hd):
            return
        message = (
            f"{ext.ref} and {hd.ref} share no compatibility group and nothing measured them together on "
            f"{ext.ref}'s test set: the model may predict no better than chance. Measure the pair with "
            f"`partsbin bench -e {ext.ref} -H {hd.ref}`, or find a bridge with `partsbin paths --extractor "
            f"{ext.ref} --head {hd.ref}`"
        )
        if strict:
            raise Incompatible(message, code="unvouched")
        warnings.warn(message, UnvouchedRecombination, stacklevel=3)

    def assemble(
        self,
        extractor: str | Component,
        head: str | Component,
        *,
        bn_mode: Literal["batch", "running"] = "batch",
        device: str | torch.device = "cpu",
        via: str | builtins.list[str] | None = None,
        strict: bool = False,
    ) -> AssembledModel:
        """``head(extractor(x))`` from two stored parts.

        Args:
            extractor, head: refs (or pulled components).
            bn_mode: BatchNorm with batch statistics (the default: the paper's choice for
                recombined networks, §4) or the stored running ones.
            device: where the model is built.
            via: "auto" goes through the best path ``/paths`` finds (direct, or through
                bridges: ``head(bridge_n(...bridge_1(extractor(x))))``); a list of bridge refs
                names the chain.
            strict: refuse (instead of warning about) two parts that share no group and
                have no measurement on the extractor's own test set.

        Returns:
            The :class:`~partsbin.client.assemble.AssembledModel` (an ``nn.Module``).

        Warns:
            UnvouchedRecombination: nothing says the two parts work together (not with ``strict``).

        Raises:
            Incompatible: the feature interfaces differ (naming both), or no path exists; with
                ``strict``, parts nothing vouches for.
            ComponentNotFound, NotCached: as :meth:`pull`.
        """
        ext = (
            extractor
            if isinstance(extractor, Component) and extractor.path
            else self.pull(extractor if isinstance(extractor, str) else extractor.ref)
        )
        hd = (
            head
            if isinstance(head, Component) and head.path
            else self.pull(head if isinstance(head, str) else head.ref)
        )
        from partsbin.client.assemble import AssembledModel, check_junctions

        if via is not None:
            from partsbin.client.bridges import bridged_extractor, resolve_via

            bridges = resolve_via(cast("Registry", self), ext, hd, via)
            if bridges:
                model = AssembledModel(
                    bridged_extractor(cast("Registry", self), ext, bridges, device),
                    hd.build(device),
                    bn_mode=bn_mode,
                    extractor_ref=ext.ref,
                    head_ref=hd.ref,
                    labels=hd.card.interface.output.labels if hd.card.interface.output else None,
                )
                model.via = [b.ref for b in bridges]
                return model
        check_junctions(ext.ref, ext.card, hd.ref, hd.card)
        self._vouch(ext, hd, strict=strict)
        return AssembledModel(
            ext.build(device),
            hd.build(device),
            bn_mode=bn_mode,
            extractor_ref=ext.ref,
            head_ref=hd.ref,
            labels=hd.card.interface.output.labels if hd.card.interface.output else None,
        )


def _vouched(registry: Registry, ext: Component, hd: Component) -> bool:
    """Something says ``hd`` works on ``ext``'s features: the same network, a shared
    compatibility group, or a measurement on the extractor's own test set."""
    if hd.card.compat.sibling == ext.ref or hd.digest in ext.card.compat.anchors:
        return True
    if set(ext.card.compat.anchors) & set(hd.card.compat.anchors):
        return True
    if registry.offline:
        return False  # measurements live in the registry
    # Only a measurement someone vouches for (the registry's ranking rule): anyone may post one.
    return any(
        ev.get("own_test")
        and ev["metric"] == "recombination_accuracy"
        and ev["bn_mode"] == "batch"
        and ev.get("trust") in ("admin", "owner", "worker")
        for ev in registry.evaluations(extractor=ext.ref, head=hd.ref)
    )
