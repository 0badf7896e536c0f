"""What a job may cost, and the limits a deployment sets on it.

Every job spec can come from any publish token, so the registry computes a job's cost
from the spec alone (:meth:`JobCost.of`, nothing is loaded or built but on the ``meta``
device) and refuses, at submission, one that exceeds its limits, naming each limit and
the variable that sets it. The defaults fit one worker of 2 cores and 24 GiB.

Components a job pulls from the registry are bounded by the registry's upload limit
(``PARTSBIN_MAX_UPLOAD_BYTES``), registered datasets by ``PARTSBIN_MAX_DATASET_BYTES``;
the parameters counted here are those of the networks a job builds from its spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from partsbin.parts.jobs.spec import JobSpec

__all__ = ["JobCost", "JobLimits", "parameter_count"]


def parameter_count(arch: str, config: dict[str, Any], split: str | None = None) -> int:
    """Tensors' elements of ``arch(config)``, from one build on the ``meta`` device."""
    import math

    from partsbin.parts.archs import part_layout

    layout = part_layout(arch, config, "full", split)
    return sum(math.prod(shape) for shape, _ in layout.tensors.values())


@dataclass
class JobCost:
    """A job's cost as its spec declares it (all of it, every phase and network)."""

    steps: int = 0
    batch_size: int = 0
    threads: int | None = None
    processes: int = 1
    images: int = 0
    image_size: int = 0
    params: int = 0
    seconds: float | None = None

    @classmethod
    def of(cls, spec: JobSpec) -> JobCost:
        """The settings' part of the cost; a kind adds its own with :meth:`JobSpec.cost`."""
        s = spec.settings
        used = type(spec).settings_used
        cost = cls(
            steps=s.steps if "steps" in used else 0,
            batch_size=max(s.batch_size if "batch_size" in used else 0, s.eval_batch_size),
            threads=s.threads,
            processes=s.distributed.world_size if s.distributed is not None else 1,
            images=s.test_limit or 0,
            seconds=s.max_seconds,
        )
        for _, data in spec.data_specs():
            cost.images = max(cost.images, data.limit or 0)
            cost.image_size = max(cost.image_size, data.largest_side() or 0)
        return cost


class JobLimits(BaseModel):
    """The deployment's limits (the registry reads them from ``PARTSBIN_MAX_JOB_*``)."""

    model_config = ConfigDict(extra="forbid")

    max_job_steps: int = Field(default=200_000, ge=1, description="optimiser steps of a whole job")
    max_job_batch_size: int = Field(default=4096, ge=2, description="images per step (training or evaluation)")
    max_job_threads: int = Field(default=16, ge=1, description="torch CPU threads a job may ask for")
    max_job_processes: int = Field(default=8, ge=1, description="processes of a distributed job")
    max_job_images: int = Field(default=1_000_000, ge=1, description="images a job asks to fit, test or keep")
    max_job_image_size: int = Field(default=512, ge=1, description="the largest image side a resize may ask for")
    max_job_params: int = Field(
        default=100_000_000, ge=1, description="parameters of the networks a job builds (400 MB as float32)"
    )
    max_job_seconds: float = Field(default=24 * 3600.0, gt=0, description="a job's wall time")

    def problems(self, cost: JobCost) -> list[str]:
        """One message per limit ``cost`` exceeds, naming the limit and its variable."""
        checks = [
            ("steps", cost.steps, self.max_job_steps, "optimiser steps"),
            ("batch_size", cost.batch_size, self.max_job_batch_size, "images per step"),
            ("threads", cost.threads or 0, self.max_job_threads, "threads"),
            ("processes", cost.processes, self.max_job_processes, "processes"),
            ("images", cost.images, self.max_job_images, "images"),
            ("image_size", cost.image_size, self.max_job_image_size, "pixels a side"),
            ("params", cost.params, self.max_job_params, "parameters"),
            ("seconds", cost.seconds or 0, self.max_job_seconds, "seconds of wall time"),
        ]
        return [
            f"{what}: {value:,} {unit} exceed this registry's limit of {limit:,} (PARTSBIN_MAX_JOB_{what.upper()})"
            for what, value, limit, unit in checks
            if value > limit
        ]
