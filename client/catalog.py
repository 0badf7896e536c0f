"""What the registry holds, and naming it: ``Registry.info``, ``list``, ``versions``,
aliases and yanks."""

from __future__ import annotations

import builtins
from typing import Any
from urllib.parse import quote

from partsbin.client._base import RegistryBase
from partsbin.client.component import Component
from partsbin.client.errors import UsageError
from partsbin.parts.names import parse_ref, validate_name

__all__ = ["CatalogMethods"]


class CatalogMethods(RegistryBase):
    """``Registry``'s catalogue methods: lookups of components, their versions, aliases and yanks."""

    def info(self, ref: str) -> Component:
        """What the registry holds for ``ref`` (nothing is downloaded).

        Args:
            ref: ``ns/name``, ``ns/name@3``, ``ns/name:alias`` or ``sha256:HEX``.

        Returns:
            The :class:`Component` (``path`` unset).

        Raises:
            InvalidName: a malformed ref. ComponentNotFound: nothing by that ref.
        """
        return Component.from_api(self._get(parse_ref(ref).api_path()))

    def list(
        self,
        *,
        limit: int | None = None,
        role: str | None = None,
        arch: str | None = None,
        group: str | None = None,
        dataset: str | None = None,
        namespace: str | None = None,
        prefix: str | None = None,
        tag: str | None = None,
        q: str | None = None,
        include_yanked: bool = False,
    ) -> builtins.list[Component]:
        """Components matching every filter given, oldest first.

        Args:
            limit: at most this many.
            role, arch, dataset, namespace, tag: equal to.
            group: an anchor's digest (members of its group).
            prefix: ``namespace/name`` starts with it. q: text in the name or the description.
            include_yanked: list yanked versions too.

        Returns:
            The components.

        Raises:
            InvalidUpload: a filter the registry refuses (a malformed digest).
        """
        filters = {
            "role": role,
            "arch": arch,
            "group": group,
            "dataset": dataset,
            "namespace": namespace,
            "prefix": prefix,
            "tag": tag,
            "q": q,
            "include_yanked": include_yanked or None,
        }
        out: builtins.list[Component] = []
        for item in self._pages("/components", limit=min(limit, 1000) if limit else None, **filters):
            out.append(Component.from_api(item))
            if limit is not None and len(out) >= limit:
                break
        return out

    def versions(self, name: str) -> builtins.list[Component]:
        """Every version of ``ns/name``, yanked ones included, oldest first.

        Raises:
            InvalidName: not ``ns/name``. ComponentNotFound: no such name.
        """
        ns, n = validate_name(name)
        return [Component.from_api(c) for c in self._get(f"/components/{ns}/{n}/versions")]

    def aliases(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` (``ns/name``) and the version it points at.

        Returns:
            ``{alias: version}``, by alias.

        Raises:
            ComponentNotFound: no component of that name.
        """
        return {a["alias"]: int(a["version"]) for a in self._get(f"/components/{name}/aliases")}

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        """Point ``name:alias`` at ``version`` (admins and the namespace's owners).

        Returns:
            The alias as stored.

        Raises:
            Unauthorized: the token may not move aliases there. ComponentNotFound: no such version.
        """
        return self._send("PUT", f"/components/{name}/aliases/{quote(alias)}", json={"version": version})

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``name:alias``.

        Raises:
            Unauthorized, ComponentNotFound: as :meth:`set_alias`.
        """
        self._send("DELETE", f"/components/{name}/aliases/{quote(alias)}")

    def yank(self, ref: str, reason: str) -> Component:
        """Yank an exact version: it stays downloadable by its version and digest, and
        ``ns/name`` no longer resolves to it.

        Returns:
            The component, yanked.

        Raises:
            UsageError: not an exact version. Unauthorized, ComponentNotFound.
        """
        r = parse_ref(ref)
        if r.kind != "version":
            raise UsageError(f"yank takes an exact version: {ref}@VERSION (see the versions with `partsbin versions`)")
        return Component.from_api(self._send("POST", f"{r.api_path()}/yank", json={"reason": reason}))

    def unyank(self, ref: str) -> Component:
        """Undo :meth:`yank`.

        Returns:
            The component, no longer yanked.

        Raises:
            UsageError: not an exact version. Unauthorized, ComponentNotFound.
        """
        r = parse_ref(ref)
        if r.kind != "version":
            raise UsageError(f"unyank takes an exact version: {ref}@VERSION")
        return Component.from_api(self._send("DELETE", f"{r.api_path()}/yank"))
