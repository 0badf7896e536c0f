"""The job queue: jobs with their state, progress and what they published; the workers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from partsbin.registry.api.deps import ReadSessionDep, SettingsDep
from partsbin.registry.crud import jobs as crud
from partsbin.registry.errors import InvalidRequest
from partsbin.registry.web.auth import web_principal
from partsbin.registry.web.render import DbInt, PageRoute, id_cursor, page

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(web_principal)])

STATES = ("queued", "running", "succeeded", "failed", "cancelled")


@router.get("/ui/jobs")
def jobs(
    request: Request,
    session: ReadSessionDep,
    settings: SettingsDep,
    status: str | None = None,
    cursor: str | None = None,
) -> Response:
    if status and status not in STATES:
        raise InvalidRequest(f"unknown job state {status!r}: one of {', '.join(STATES)}")
    rows, next_cursor = crud.list_jobs(
        session, status=status or None, cursor=id_cursor(cursor, "cursor"), limit=settings.page_size
    )
    from partsbin.parts.jobs.spec import progress_line
    from partsbin.registry.api.routes.jobs import kind_of

    return page(
        request,
        "jobs.html",
        jobs=rows,
        kinds={j.id: kind_of(j) for j in rows},
        progress={j.id: progress_line(j.progress or {}) for j in rows},
        next_cursor=next_cursor,
        status=status or "",
        states=STATES,
        workers=crud.list_workers(session, limit=20),
        first_page=cursor is None,
    )


@router.get("/ui/jobs/{job_id}")
def job(job_id: DbInt, request: Request, session: ReadSessionDep) -> Response:
    import yaml

    from partsbin.parts.jobs.spec import compact, progress_line
    from partsbin.registry.api.routes.jobs import kind_of, summary_of

    row = crud.get_job(session, job_id)
    principal = getattr(request.state, "web_principal", None)
    return page(
        request,
        "job.html",
        job=row,
        kind=kind_of(row),
        summary=summary_of(row),
        progress=progress_line(row.progress or {}),
        spec_yaml=yaml.safe_dump(compact(row.spec), sort_keys=False),
        # The message is for everyone; the worker's traceback for admins only.
        traceback=row.error_detail if principal is not None and principal.scope == "admin" else None,
    )
