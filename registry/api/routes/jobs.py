"""/jobs: submit, list, inspect and cancel training jobs; workers claim, heartbeat,
complete, fail or release them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response

from partsbin.parts.jobs import InvalidSpec, JobSpec, parse_job_result, parse_job_spec
from partsbin.registry.api.deps import PrincipalDep, ReadSessionDep, RequireToken, SessionDep, SettingsDep
from partsbin.registry.api.params import IdCursor, IdPath, Limit
from partsbin.registry.api.responses import errors
from partsbin.registry.api.schemas import (
    ClaimIn,
    FailIn,
    HeartbeatIn,
    JobCompleteIn,
    JobOut,
    JobPage,
    LeaseIn,
    SubmitIn,
)
from partsbin.registry.config import Settings
from partsbin.registry.crud import jobs as crud
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.db.models import Job
from partsbin.registry.errors import Forbidden, InvalidRequest

router = APIRouter(prefix="/jobs", tags=["jobs"])


def job_out(job: Job, with_lease: bool = False, principal: Principal | None = None) -> JobOut:
    """The job as the API shows it: the lease id only to the worker that claimed it, the
    traceback only to admins."""
    data = {k: getattr(job, k) for k in JobOut.model_fields if k not in ("kind", "summary")}
    data["kind"] = kind_of(job)
    data["summary"] = summary_of(job)
    if not with_lease:
        data["lease_id"] = None
    if principal is None or principal.scope != "admin":
        data["error_detail"] = None
    return JobOut(**data)


def kind_of(job: Job) -> str:
    return str(job.spec.get("kind", "train")) if isinstance(job.spec, dict) else "train"


def summary_of(job: Job) -> list[str]:
    """The result's lines for people (``partsbin jobs show``, ``/ui/jobs/{id}``)."""
    if job.result is None:
        return []
    try:
        return parse_job_result(kind_of(job), job.result).summary()
    except InvalidSpec:
        return []


def validate_spec(spec: dict[str, Any], settings: Settings) -> JobSpec:
    """The spec as a job from any publish token may give it: every field checked, every
    path under the data roots, and its cost within the deployment's limits. Raises 422
    naming each problem; nothing is queued."""
    try:
        parsed: JobSpec = parse_job_spec(spec, data_roots=settings.data_root_list, where="spec")
    except InvalidSpec as exc:
        raise InvalidRequest(f"invalid job spec: {exc}") from None
    d = parsed.settings.distributed
    if d is not None and d.nnodes > 1:
        raise InvalidRequest(
            "invalid job spec: settings.distributed.nnodes > 1: a run over several machines is started on each of "
            "them with `partsbin train --local` (docs/distributed.md), not through the queue"
        )
    problems = settings.problems(parsed.cost())
    if problems:
        raise InvalidRequest("this job exceeds the registry's limits: " + "; ".join(problems))
    if parsed.settings.max_seconds is None:
        # The wall time it may take, recorded on the job: the worker stops it there.
        parsed.settings.max_seconds = settings.max_job_seconds
    return parsed


#: A worker: a publish or admin token.
WorkerDep = Annotated[
    Principal,
    Depends(
        RequireToken(
            "working on jobs",
            ("publish", "admin"),
            "workers need a publish or admin token (they publish what they train)",
        )
    ),
]


def _worker_scope(principal: Principal) -> tuple[str, ...] | None:
    """The namespaces whose jobs a worker may claim (None: every one)."""
    return None if principal.scope == "admin" else principal.namespaces


_JOB = errors(404)
_LEASE = errors(404, 409)


@router.post("", response_model=JobOut, status_code=201, summary="Submit a training job")
def submit(
    body: SubmitIn,
    session: SessionDep,
    principal: Annotated[Principal, Depends(RequireToken("submitting jobs"))],
    settings: SettingsDep,
) -> JobOut:
    spec = validate_spec(body.spec, settings)
    if not principal.can_publish(spec.namespace):
        raise Forbidden(f"this token may not publish into namespace {spec.namespace!r}, where the job would publish")
    job = crud.submit_job(
        session=session,
        spec=spec.model_dump(mode="json"),
        namespace=spec.namespace,
        submitted_by=principal.token_id,
        max_attempts=body.max_attempts,
    )
    session.commit()
    return job_out(job)


@router.get("", response_model=JobPage, summary="List jobs")
def list_(
    session: ReadSessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
    cursor: IdCursor = None,
    limit: Limit = None,
) -> JobPage:
    rows, nxt = crud.list_jobs(session, status=status, cursor=cursor, limit=limit or settings.page_size)
    return JobPage(items=[job_out(j, principal=principal) for j in rows], next_cursor=nxt)


@router.get("/{job_id:id}", response_model=JobOut, summary="A job", responses=_JOB)
def show(job_id: IdPath, session: ReadSessionDep, principal: PrincipalDep) -> JobOut:
    return job_out(crud.get_job(session, job_id), principal=principal)


@router.post("/{job_id:id}/cancel", response_model=JobOut, summary="Cancel a job", responses=_JOB)
def cancel(
    job_id: IdPath, session: SessionDep, principal: Annotated[Principal, Depends(RequireToken("cancelling jobs"))]
) -> JobOut:
    job = crud.get_job(session, job_id)
    if not principal.can_publish(job.namespace) and principal.token_id != job.submitted_by:
        raise Forbidden(f"this token may not cancel jobs of namespace {job.namespace!r}")
    job = crud.cancel_job(session=session, job=job)
    session.commit()
    return job_out(job, principal=principal)


@router.post(
    "/claim",
    response_model=JobOut,
    summary="Claim the next queued job (workers)",
    responses={204: {"description": "no job queued"}},
)
def claim(body: ClaimIn, session: SessionDep, principal: WorkerDep) -> Any:
    job = crud.claim_job(
        session=session, worker=body.worker, lease_seconds=body.lease_seconds, namespaces=_worker_scope(principal)
    )
    if job is None:
        return Response(status_code=204)
    return job_out(job, with_lease=True)


@router.post(
    "/{job_id:id}/heartbeat", response_model=JobOut, summary="Extend the lease and report progress", responses=_LEASE
)
def beat(job_id: IdPath, body: HeartbeatIn, session: SessionDep, principal: WorkerDep) -> JobOut:
    job = crud.heartbeat(
        session=session, job_id=job_id, lease_id=body.lease_id, lease_seconds=body.lease_seconds, progress=body.progress
    )
    session.commit()
    return job_out(job)


@router.post(
    "/{job_id:id}/complete", response_model=JobOut, summary="Finish a job with the refs it published", responses=_LEASE
)
def complete(job_id: IdPath, body: JobCompleteIn, session: SessionDep, principal: WorkerDep) -> JobOut:
    result = None
    if body.result is not None:
        job = crud.get_job(session, job_id)
        try:
            result = parse_job_result(kind_of(job), body.result).model_dump(mode="json")
        except InvalidSpec as exc:
            raise InvalidRequest(str(exc)) from None
    job = crud.complete_job(
        session=session, job_id=job_id, lease_id=body.lease_id, refs=body.refs, progress=body.progress, result=result
    )
    session.commit()
    return job_out(job)


@router.post("/{job_id:id}/fail", response_model=JobOut, summary="Fail a job with the error", responses=_LEASE)
def fail(job_id: IdPath, body: FailIn, session: SessionDep, principal: WorkerDep) -> JobOut:
    job = crud.fail_job(
        session=session, job_id=job_id, lease_id=body.lease_id, error=body.error, detail=body.detail, retry=body.retry
    )
    session.commit()
    return job_out(job)


@router.post(
    "/{job_id:id}/release",
    response_model=JobOut,
    summary="Hand a job back to the queue (worker shutting down)",
    responses=_LEASE,
)
def release(job_id: IdPath, body: LeaseIn, session: SessionDep, principal: WorkerDep) -> JobOut:
    job = crud.release_job(session=session, job_id=job_id, lease_id=body.lease_id)
    session.commit()
    return job_out(job)
