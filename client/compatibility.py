"""Which parts work together: the registry's answers (``Registry.compatible``,
``groups``, ``paths``, ``evaluations``) and the measurements that feed them (``bench``,
``bench_path``, ``post_evaluation``)."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any, Literal, cast

from partsbin.client._base import RegistryBase
from partsbin.client.component import Component
from partsbin.client.errors import UsageError

if TYPE_CHECKING:
    from partsbin.client.bench_result import BenchResult
    from partsbin.client.registry import Registry

__all__ = ["CompatibilityMethods"]


class CompatibilityMethods(RegistryBase):
    """``Registry``'s methods on compatibility: queries, benchmarks and evaluations."""

    def compatible(self, *, head: str | None = None, extractor: str | None = None) -> builtins.list[dict[str, Any]]:
        """Components that recombine with ``head`` (extractors) or ``extractor`` (heads).

        Returns:
            Items with the ``component``, its ``role``, the ``status`` (measured first) and the ``reasons``.

        Raises:
            UsageError: not exactly one of ``head`` and ``extractor``. ComponentNotFound: no such part.
        """
        if (head is None) == (extractor is None):
            raise UsageError("compatible(): give exactly one of head= or extractor=")
        params = {"head": head} if head is not None else {"extractor": extractor}
        out = []
        for item in self._pages("/compatible", **params):
            item["component"] = Component.from_api(item["component"])
            out.append(item)
        return out

    def groups(self) -> builtins.list[dict[str, Any]]:
        """Every compatibility group: its anchor, kind and member count.

        Raises:
            Unauthorized: the registry needs a token to read.
        """
        return list(self._pages("/groups"))

    def group(self, group_id: str) -> dict[str, Any]:
        """One group (by its anchor's digest) and its members.

        Raises:
            ComponentNotFound: no such group.
        """
        return self._get(f"/groups/{group_id.removeprefix('sha256:')}")

    def post_evaluation(
        self,
        *,
        extractor: str,
        head: str,
        dataset: str,
        value: float,
        samples: int,
        bn_mode: str,
        batch_size: int | None = None,
        metric: str = "recombination_accuracy",
        details: dict[str, Any] | None = None,
        classes: int | None = None,
        job: tuple[int, str] | None = None,
        finetune_steps: int | None = None,
        data_digest: str | None = None,
    ) -> dict[str, Any]:
        """Record a measured recombination.

        Args:
            extractor, head: the refs of the pair. dataset: what it was measured on.
            value: the accuracy (0 to 1). samples: test images. bn_mode: batch, running or recalibrated.
            classes: how many classes the prediction was over (chance level is 1/classes).
            job: (job id, lease id) when a worker measured it for a job it holds.
            finetune_steps: steps the pair was fine-tuned after recombining (a transfer curve's point).
            data_digest: what the test images were (``Images.data_digest``: the source's content
                digest, selections, transforms, size): the registry compares it with the test set the
                extractor's card records, and only a measurement on that set is the pair's
                recombination accuracy.

        Returns:
            The evaluation as stored, with its id and trust.

        Raises:
            Unauthorized: no token. InvalidUpload: a field the registry refuses. ComponentNotFound.
        """
        body = {
            "extractor": extractor,
            "head": head,
            "dataset": dataset,
            "metric": metric,
            "value": value,
            "samples": samples,
            "bn_mode": bn_mode,
            "batch_size": batch_size,
            "classes": classes,
            "data_digest": data_digest,
            "details": {**(details or {}), **({} if finetune_steps is None else {"finetune_steps": finetune_steps})},
        }
        if job is not None:
            body["job_id"], body["lease_id"] = job
        return self._send("POST", "/evaluations", json=body)

    def evaluations(self, *, extractor: str | None = None, head: str | None = None) -> builtins.list[dict[str, Any]]:
        """The evaluations of ``extractor`` and/or ``head``.

        Raises:
            ComponentNotFound: no such part.
        """
        return self._get("/evaluations", extractor=extractor, head=head)

    def paths(self, *, extractor: str, head: str, max_bridges: int | None = None) -> dict[str, Any]:
        """Ways from ``extractor`` to ``head``, best first (``GET /paths``): direct through a
        shared group, or through bridges (adapters, transforms); each step says why.

        Returns:
            ``{"paths": [...]}``, each with its ``kind``, ``bridges``, ``status`` and ``measured_accuracy``.

        Raises:
            ComponentNotFound: no such part.
        """
        first = self._get("/paths", extractor=extractor, head=head, max_bridges=max_bridges, limit=1000)
        paths, cursor = list(first["paths"]), first.get("next_cursor")
        while cursor:  # every page: the ranking is over all of them
            page = self._get(
                "/paths", extractor=extractor, head=head, max_bridges=max_bridges, limit=1000, cursor=cursor
            )
            paths += page["paths"]
            cursor = page.get("next_cursor")
        return {**first, "paths": paths, "next_cursor": None}

    def bench_path(
        self,
        extractor: str,
        head: str,
        via: str | builtins.list[str] = "auto",
        *,
        data: Any = None,
        batch_size: int = 256,
        shuffle_seed: int = 0,
        post: bool = True,
    ) -> dict[str, Any]:
        """Measure the path from ``extractor`` to ``head`` through bridges like a direct
        pair, and post it so that ``/paths`` ranks it.

        Args:
            via: "auto" (the best path ``/paths`` finds) or the bridges' refs.
            data: the extractor's test data, if not the card's (a data spec or a local path).
            batch_size, shuffle_seed: the batches, as :meth:`bench`'s.
            post: post it as an evaluation (metric ``bridged_recombination_accuracy``).

        Returns:
            ``{"accuracy", "samples", "via", ...}``.

        Raises:
            Incompatible: no path. UsageError: bad data. Unauthorized: posting without a token.
        """
        from partsbin.client.bridges import bench_path

        return bench_path(
            cast("Registry", self),
            extractor,
            head,
            via,
            data=data,
            batch_size=batch_size,
            shuffle_seed=shuffle_seed,
            post=post,
        )

    def bench(
        self,
        extractors: builtins.list[str],
        heads: builtins.list[str],
        *,
        data: dict[str, Any] | None = None,
        bn_mode: Literal["batch", "running", "recalibrate"] = "batch",
        batch_size: int = 256,
        batch_composition: Literal["common-classes", "all-classes"] = "common-classes",
        shuffle_seed: int = 0,
        threads: int | None = None,
        correlation: bool = False,
        latency: bool = False,
        latency_device: str = "cpu",
        post: bool = True,
        distributed: bool = False,
        heads_per_job: int = 8,
        namespace: str | None = None,
        poll_seconds: float = 1.0,
    ) -> BenchResult:
        """The recombination matrix of ``extractors`` × ``heads``, each extractor on its own
        task's test images (as its card records them).

        Args:
            data: an extractor (by ref, name or task) → its test data: a local copy of what its
                card records, or a whole data spec.
            bn_mode: BatchNorm: batch statistics (the paper's), running, or recalibrated on the test images.
            batch_size, batch_composition, shuffle_seed: how the test images are batched.
            threads: torch CPU threads while measuring.
            correlation: also the extractors' feature correlation. latency: also latency and
                throughput on ``latency_device``.
            post: post every cell as an evaluation (the token is checked first).
            distributed: split the matrix into ``evaluate`` jobs for workers (``heads_per_job``
                heads each, in ``namespace``) and wait for them.

        Returns:
            The :class:`~partsbin.client.bench_result.BenchResult` (``table()``, ``heatmap()``, ``to_json()``).

        Raises:
            UsageError: arguments that do not fit, or test data that is not the recorded data.
            DataMissing: the test data is not here. Unauthorized: posting without a token.
        """
        from partsbin.client.bench import bench
        from partsbin.parts.data.access import DataAccess, data_access

        # A test set recorded as a registered dataset is pulled (and verified) through this client.
        with data_access(DataAccess(datasets=self.dataset_resolver())):
            return bench(
                cast("Registry", self),
                extractors,
                heads,
                data=data,
                bn_mode=bn_mode,
                batch_size=batch_size,
                batch_composition=batch_composition,
                shuffle_seed=shuffle_seed,
                threads=threads,
                correlation=correlation,
                latency=latency,
                latency_device=latency_device,
                post=post,
                distributed=distributed,
                heads_per_job=heads_per_job,
                namespace=namespace,
                poll_seconds=poll_seconds,
            )
