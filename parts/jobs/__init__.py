"""Jobs: the kinds a worker runs, each declared once (:mod:`partsbin.parts.jobs.kinds`).

One settings model (:mod:`~partsbin.parts.jobs.settings`), one spec and result shape
(:mod:`~partsbin.parts.jobs.spec`), the cost a spec declares and the deployment's limits
(:mod:`~partsbin.parts.jobs.limits`), and a module per family of kinds.
"""

from partsbin.parts.jobs.kinds import (
    InvalidSpec,
    JobKind,
    Option,
    job_kind,
    job_kinds,
    job_specs_schema,
    parse_job_result,
    parse_job_spec,
    register,
)
from partsbin.parts.jobs.limits import JobCost, JobLimits
from partsbin.parts.jobs.settings import Distributed, Settings
from partsbin.parts.jobs.spec import JobResult, JobSpec, TrainStats

__all__ = [
    "InvalidSpec",
    "JobKind",
    "Option",
    "job_kind",
    "job_kinds",
    "job_specs_schema",
    "parse_job_result",
    "parse_job_spec",
    "register",
    "JobCost",
    "JobLimits",
    "Distributed",
    "Settings",
    "JobResult",
    "JobSpec",
    "TrainStats",
]
