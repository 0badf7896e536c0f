"""Registered datasets on the client's side: ``Registry.push_data``, ``pull_data`` and the
resolver a job's data specs (``{"dataset": "ns/name@1"}``) are read through.

A dataset file is cached like a component's, by its sha256, verified as it arrives; a
second pull transfers nothing.
"""

from __future__ import annotations

import builtins
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import ValidationError

from partsbin.client._http import raise_for_status, with_retries
from partsbin.client.errors import MissingFile, RegistryError, UsageError
from partsbin.parts.messages import describe_validation_error
from partsbin.parts.names import parse_digest, parse_ref

if TYPE_CHECKING:
    from partsbin.client.registry import Registry
    from partsbin.parts.data.access import LocalDataset
    from partsbin.parts.datasets import DataCard

# The data modules (data cards, packing, the access layer) are imported where they are
# used: every Registry, and so `partsbin ls`, would otherwise pay ~35 ms for them.

__all__ = ["Dataset", "DatasetMethods", "push_data", "pull_data", "list_datasets"]


@dataclass
class Dataset:
    """A registered dataset as the registry describes it; ``path`` is set once pulled."""

    ref: str
    name: str
    version: int
    digest: str
    size: int
    format: str
    card: DataCard
    path: Path | None = None
    created: bool | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Dataset:
        from partsbin.parts.datasets import DataCard

        try:
            name, version = data["name"], data["version"]
            parse_digest(data["digest"])
            if data["ref"] != f"{name}@{version}":
                raise ValueError(f"ref {data['ref']!r} does not name {name}@{version}")
            card = DataCard.model_validate(data["card"])
            return cls(
                ref=data["ref"],
                name=name,
                version=int(version),
                digest=data["digest"],
                size=int(data["size"]),
                format=str(data["format"]),
                card=card,
            )
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise RegistryError(f"the registry sent an invalid dataset description, refused: {exc}") from None

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def local(self) -> LocalDataset:
        from partsbin.parts.data.access import LocalDataset

        if self.path is None:
            raise UsageError(f"{self.ref} is not pulled yet: use Registry.pull_data")
        return LocalDataset(ref=self.ref, digest=self.digest, path=self.path, format=self.format)


def push_data(
    registry: Registry,
    path: str | Path,
    *,
    name: str,
    description: str = "",
    license: str | None = None,
    source: str | None = None,
    tags: builtins.list[str] | None = None,
) -> Dataset:
    from partsbin.parts.datasets import DataCard, DatasetError, dataset_name, inspect_dataset, pack_folder

    src = Path(path)
    if not src.exists():
        raise MissingFile(f"{src} does not exist")
    try:
        card = DataCard(name=name, description=description, license=license, source=source, tags=tags or [])
        dataset_name(card)
    except ValidationError as exc:
        raise UsageError(f"invalid data card: {describe_validation_error(exc)}") from None
    with tempfile.TemporaryDirectory(prefix="partsbin-data-") as tmp:
        if src.is_dir():
            packed = Path(tmp) / "dataset.tar"
            try:
                pack_folder(src, packed)
            except DatasetError as exc:
                raise UsageError(str(exc)) from None
            src = packed
        try:
            inspect_dataset(src)  # what the registry checks, before anything is sent
        except DatasetError as exc:
            raise UsageError(f"{path}: {exc}") from None
        registry.check_can_publish(name.split("/")[0], f"registering the dataset {name}")
        with src.open("rb") as fh:
            response = raise_for_status(
                registry._http.post(
                    "/datasets",
                    files={"file": (src.name, fh, "application/octet-stream")},
                    data={"card": card.model_dump_json(exclude_none=True)},
                    timeout=None,
                )
            )
    out = Dataset.from_api(response.json())
    out.created = response.status_code == 201
    return out


def _api_path(ref: str) -> str:
    parsed = parse_ref(ref)
    if parsed.kind == "digest":
        return f"/datasets/by-digest/{parsed.digest}"
    if parsed.kind == "version":
        return f"/datasets/{parsed.namespace}/{parsed.name}/versions/{parsed.version}"
    if parsed.kind == "alias":
        raise UsageError(f"datasets have no aliases: {ref}")
    return f"/datasets/{parsed.namespace}/{parsed.name}"


def info(registry: Registry, ref: str) -> Dataset:
    return Dataset.from_api(registry._get(_api_path(ref)))


def pull_data(registry: Registry, ref: str) -> Dataset:
    from partsbin.parts.hashing import HashingWriter

    ds = info(registry, ref)
    if not registry.cache.has(ds.hex):

        def download() -> None:
            target = registry.cache.incomplete(ds.hex)
            with HashingWriter(target) as writer:
                url = f"/datasets/by-digest/{ds.hex}/file"
                with registry._http.stream("GET", url, follow_redirects=registry.direct is not False) as response:
                    raise_for_status(response)
                    for chunk in response.iter_raw():
                        writer.write(chunk)
                registry.cache.commit(ds.hex, target, writer.close())

        with_retries(download)
    ds.path = registry.cache.blob_path(ds.hex)
    return ds


def list_datasets(registry: Registry, namespace: str | None = None) -> builtins.list[Dataset]:
    return [Dataset.from_api(d) for d in registry._pages("/datasets", namespace=namespace)]


class DatasetMethods:
    """``Registry``'s dataset methods."""

    def push_data(
        self,
        path: str | Path,
        *,
        name: str,
        description: str = "",
        license: str | None = None,
        source: str | None = None,
        tags: builtins.list[str] | None = None,
    ) -> Dataset:
        """Register a dataset: an ``.npz`` of arrays, or a folder of ``<class>/<image>``
        (``<split>/<class>/<image>``) packed as a tar; the registry reads its classes,
        splits and image shape from the file.

        Args:
            path: the .npz, the tar, or the folder.
            name: NAMESPACE/NAME it is registered as (the registry assigns the version).
            description, license, source, tags: what the data card says for people.

        Returns:
            The :class:`~partsbin.client.datasets.Dataset` (``created`` False for bytes already there).

        Raises:
            MissingFile: ``path`` does not exist. UsageError: not a dataset file. Unauthorized, InvalidUpload.
        """
        return push_data(
            cast("Registry", self), path, name=name, description=description, license=license, source=source, tags=tags
        )

    def pull_data(self, ref: str) -> Dataset:
        """Download a registered dataset into the cache (sha256 verified); ``path`` set.

        Raises:
            DatasetNotFound: no such dataset. DigestMismatch: the bytes did not hash to its digest.
        """
        return pull_data(cast("Registry", self), ref)

    def datasets(self, *, namespace: str | None = None) -> builtins.list[Dataset]:
        """Every registered dataset (of ``namespace``), oldest first.

        Raises:
            Unauthorized: the registry needs a token to read.
        """
        return list_datasets(cast("Registry", self), namespace)

    def dataset_resolver(self) -> Callable[[str], LocalDataset]:
        """What a job's ``{"dataset": REF}`` data specs are read through.

        Returns:
            A function of a ref that pulls the dataset (verified) and says where it is.
        """
        return lambda ref: self.pull_data(ref).local()
