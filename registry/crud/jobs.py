"""The training job queue.

Workers claim jobs over HTTP with a lease and keep them with heartbeats. A job whose
lease expires goes back to the queue (or fails after ``max_attempts``). On PostgreSQL
claiming uses ``SELECT … FOR UPDATE SKIP LOCKED`` so that concurrent workers never wait
on, or take, the same row; SQLite serialises writers, and the conditional UPDATE below
makes a lost race visible there.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from partsbin.registry.db.models import Job, Worker, utcnow
from partsbin.registry.errors import Conflict, NotFound
from partsbin.registry.webhooks import events

__all__ = [
    "submit_job",
    "get_job",
    "list_jobs",
    "cancel_job",
    "claim_job",
    "heartbeat",
    "complete_job",
    "fail_job",
    "release_job",
    "requeue_expired",
    "leased_job",
    "list_workers",
    "worker_seen",
]

TERMINAL = ("succeeded", "failed", "cancelled")


def submit_job(
    *, session: Session, spec: dict[str, Any], namespace: str, submitted_by: int | None, max_attempts: int = 3
) -> Job:
    job = Job(spec=spec, namespace=namespace, submitted_by=submitted_by, max_attempts=max_attempts, status="queued")
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def list_jobs(
    session: Session, *, status: str | None = None, cursor: int | None = None, limit: int = 50
) -> tuple[list[Job], str | None]:
    q = sa.select(Job)
    if status:
        q = q.where(Job.status == status)
    if cursor is not None:
        q = q.where(Job.id > cursor)
    rows = list(session.scalars(q.order_by(Job.id).limit(limit + 1)))
    return rows[:limit], (str(rows[limit - 1].id) if len(rows) > limit else None)


def cancel_job(*, session: Session, job: Job) -> Job:
    if job.status == "queued":
        job.status = "cancelled"
        job.finished_at = utcnow()
        session.flush()
        events.job_finished(session, job)
    elif job.status == "running":
        # The worker learns it from its next heartbeat and stops.
        job.cancel_requested = True
    session.flush()
    return job


def _updated(session: Session, statement: sa.Update) -> int:
    """Rows an UPDATE changed."""
    return int(cast(CursorResult[Any], session.execute(statement)).rowcount or 0)


def requeue_expired(session: Session) -> int:
    """Jobs whose lease ran out go back to the queue, or fail once out of attempts."""
    now = utcnow()
    expired = sa.and_(Job.status == "running", Job.lease_expires_at < now)
    ending = sa.and_(expired, sa.or_(Job.attempts >= Job.max_attempts, Job.cancel_requested.is_(True)))
    ended = list(session.scalars(sa.select(Job.id).where(ending)))
    failed = _updated(
        session,
        sa.update(Job)
        .where(ending, Job.id.in_(ended))
        .values(
            status=sa.case((Job.cancel_requested.is_(True), "cancelled"), else_="failed"),
            error=sa.case(
                (Job.cancel_requested.is_(True), "cancelled"), else_="lease expired on the last allowed attempt"
            ),
            lease_id=None,
            finished_at=now,
        )
        .execution_options(synchronize_session=False),
    )
    if ended:
        for job in session.scalars(sa.select(Job).where(Job.id.in_(ended)).execution_options(populate_existing=True)):
            if job.status in ("failed", "cancelled"):
                events.job_finished(session, job)
    requeued = _updated(
        session,
        sa.update(Job)
        .where(expired)
        .values(status="queued", lease_id=None, worker=None, lease_expires_at=None, error="lease expired; requeued"),
    )
    return failed + requeued


def worker_seen(session: Session, worker: str, job_id: int | None) -> None:
    """Record that ``worker`` was heard from now (holding ``job_id``): one upsert."""
    values = {"name": worker, "last_seen_at": utcnow(), "job_id": job_id}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(Worker).values(values)
        session.execute(stmt.on_conflict_do_update(index_elements=[Worker.name], set_=values))
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(Worker).values(values)
        session.execute(lite.on_conflict_do_update(index_elements=[Worker.name], set_=values))
    else:
        session.merge(Worker(**values))


def _worker_done(session: Session, job: Job) -> None:
    """The job's worker is heard from, and holds no job any more."""
    if job.worker:
        worker_seen(session, job.worker, None)


def list_workers(session: Session, *, limit: int = 100) -> list[Worker]:
    """Workers by when they were last heard from, the most recent first."""
    return list(session.scalars(sa.select(Worker).order_by(Worker.last_seen_at.desc(), Worker.name).limit(limit)))


def claim_job(*, session: Session, worker: str, lease_seconds: float, namespaces: tuple[str, ...] | None) -> Job | None:
    """Take the oldest queued job (in ``namespaces`` unless None), or return None."""
    requeue_expired(session)
    # A claim is also the idle worker's sign of life (it polls while the queue is empty).
    worker_seen(session, worker, None)
    session.commit()
    postgres = session.get_bind().dialect.name == "postgresql"
    for _attempt in range(10):
        q = sa.select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1)
        if namespaces is not None:
            q = q.where(Job.namespace.in_(namespaces))
        if postgres:
            q = q.with_for_update(skip_locked=True)
        job_id = session.scalar(q)
        if job_id is None:
            session.commit()
            return None
        now = utcnow()
        lease = uuid.uuid4().hex
        taken = _updated(
            session,
            sa.update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(
                status="running",
                worker=worker,
                lease_id=lease,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=Job.attempts + 1,
                started_at=now,
                error=None,
            ),
        )
        if taken == 1:
            worker_seen(session, worker, job_id)
        session.commit()
        if taken == 1:
            return session.get(Job, job_id, populate_existing=True)
    return None


def leased_job(session: Session, job_id: int, lease_id: str) -> Job:
    """The job, if it is running under ``lease_id``; Conflict otherwise."""
    job = get_job(session, job_id)
    if job.status != "running" or job.lease_id != lease_id:
        raise Conflict(f"job {job_id} is not held under this lease any more (status {job.status}); stop working on it")
    return job


_leased = leased_job


def heartbeat(
    *, session: Session, job_id: int, lease_id: str, lease_seconds: float, progress: dict[str, Any] | None
) -> Job:
    job = _leased(session, job_id, lease_id)
    job.lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)
    if job.worker:
        worker_seen(session, job.worker, job.id)
    if progress is not None:
        job.progress = progress
    session.flush()
    return job


def complete_job(
    *,
    session: Session,
    job_id: int,
    lease_id: str,
    refs: list[str],
    progress: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
) -> Job:
    """Idempotent: a worker whose first call went through but whose answer was lost (a
    network blip) repeats it and gets the same answer, instead of a conflict, and the
    job is not trained again. A finished job keeps the id of the lease that finished it."""
    job = get_job(session, job_id)
    if job.status == "succeeded" and job.lease_id == lease_id:
        return job
    job = leased_job(session, job_id, lease_id)
    _worker_done(session, job)
    job.status, job.result_refs, job.finished_at, job.lease_expires_at = "succeeded", refs, utcnow(), None
    job.result = result
    if progress is not None:
        # A finished job shows where it ended, not its last heartbeat (which can be steps behind).
        job.progress = progress
    session.flush()
    events.job_finished(session, job)
    return job


def fail_job(
    *, session: Session, job_id: int, lease_id: str, error: str, retry: bool, detail: str | None = None
) -> Job:
    """Idempotent like :func:`complete_job` once the job has ended; a requeued job has no
    lease any more, so a repeated call answers a conflict, which the worker ignores."""
    job = get_job(session, job_id)
    if job.status in ("failed", "cancelled") and job.lease_id == lease_id:
        return job
    job = leased_job(session, job_id, lease_id)
    _worker_done(session, job)
    job.error, job.error_detail, job.lease_expires_at = error, detail, None
    if job.cancel_requested:
        job.status, job.finished_at = "cancelled", utcnow()
    elif retry and job.attempts < job.max_attempts:
        job.status, job.worker, job.lease_id = "queued", None, None
    else:
        job.status, job.finished_at = "failed", utcnow()
    session.flush()
    if job.status != "queued":
        events.job_finished(session, job)
    return job


def release_job(*, session: Session, job_id: int, lease_id: str) -> Job:
    """A worker shutting down hands its job back; the attempt does not count."""
    job = _leased(session, job_id, lease_id)
    _worker_done(session, job)
    job.status, job.lease_id, job.lease_expires_at, job.worker = "queued", None, None, None
    job.attempts = max(0, job.attempts - 1)
    session.flush()
    return job
