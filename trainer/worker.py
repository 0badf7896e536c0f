"""The worker: takes training jobs from a registry over HTTP and publishes what it trained.

It holds each job under a lease, renewed by heartbeats that also carry progress (step,
loss, images/s). A cancelled job stops at the next step. On SIGTERM the job in hand is
released back to the queue (the attempt does not count). A worker killed outright
simply stops heartbeating; its lease expires and another worker takes the job.

A short registry outage ends neither the worker nor the job: heartbeats, ``complete``,
``fail`` and ``release`` are retried for as long as the lease lasts (the registry makes
them idempotent), and a failed claim is tried again at the next poll.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from partsbin.client._http import with_retries
from partsbin.client.errors import Conflict, ConnectionFailed, RegistryError, ServerError, Unauthorized
from partsbin.parts.cancel import StopRequested
from partsbin.parts.data import DataMissing
from partsbin.parts.data.access import data_roots_from_env
from partsbin.parts.jobs import JobResult, parse_job_spec
from partsbin.trainer.jobs import capacity_problem, run_job
from partsbin.trainer.lease import holding_lease
from partsbin.trainer.loop import Progress

__all__ = ["Worker"]

log = logging.getLogger("partsbin.worker")
T = TypeVar("T")
# However short the remaining lease, a final answer (complete, fail) is retried this long:
# the registry hands an expired job to another worker only when one asks for work.
_MIN_RETRY_SECONDS = 10.0


def _event(event: str, **fields: Any) -> None:
    """One JSON object per line: easy to grep, and to ship to a log store."""
    log.info(json.dumps({"event": event, **fields}, default=str))


def final_progress(last: dict[str, Any] | None, result: JobResult) -> dict[str, Any]:
    """Where a finished job ended: its last reported step, marked final (``partsbin jobs
    show`` prints it beside the result's summary)."""
    out = {**(last or {}), "final": True}
    if result.train is not None:
        out["done"] = out["total"] = result.train.steps
        if result.train.final_loss is not None:
            out["loss"] = result.train.final_loss
    return json.loads(json.dumps(out, default=str))


#: Kept from an error message for every reader of the job (the traceback goes to the
#: worker's log and to admins only).
MAX_ERROR_CHARS = 2000


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, (ValueError, LookupError, PermissionError, FileNotFoundError, TimeoutError, RuntimeError)):
        text = f"{type(exc).__name__}: {text}"
    return text[:MAX_ERROR_CHARS]


class Worker:
    def __init__(
        self,
        registry: Any,
        *,
        name: str | None = None,
        lease_seconds: float = 60.0,
        heartbeat_seconds: float | None = None,
        poll_seconds: float = 2.0,
        data_roots: tuple[Path, ...] | None = None,
    ) -> None:
        self.registry = registry
        self.name = name or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.lease_seconds = lease_seconds
        # A cancel reaches the worker with the next heartbeat's answer: at most every 5 s.
        self.heartbeat_seconds = heartbeat_seconds or min(5.0, max(0.5, lease_seconds / 4))
        self.poll_seconds = poll_seconds
        #: The only folders a job's paths may name (PARTSBIN_DATA_ROOTS, as the registry's).
        self.data_roots = data_roots if data_roots is not None else data_roots_from_env()
        self.stop = threading.Event()

    def run(self, *, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Work until stopped (or ``max_jobs`` done, or the queue is empty with ``exit_when_idle``)."""
        done = 0
        # What this worker can build, plugins included: a job of another arch fails here
        # with the list, so the log says what to install.
        from partsbin.parts.archs import list_archs, provider_of

        archs = {name: str(p) if (p := provider_of(name)) else None for name in list_archs()}
        _event("worker.start", worker=self.name, url=self.registry.url, archs=archs)
        while not self.stop.is_set() and (max_jobs is None or done < max_jobs):
            try:
                # Not retried here: a claim whose answer was lost would hold a second job.
                job = with_retries(lambda: self.registry.jobs.claim(self.name, self.lease_seconds), attempts=1)
            except Unauthorized as exc:
                # A bad or revoked token, or one that may not work on jobs: not transient.
                _event("worker.unauthorized", worker=self.name, error=str(exc))
                raise
            except (ConnectionFailed, RegistryError) as exc:
                _event("worker.claim_failed", worker=self.name, error=str(exc))
                self.stop.wait(self.poll_seconds)
                continue
            if job is None:
                if exit_when_idle:
                    break
                self.stop.wait(self.poll_seconds)
                continue
            self.handle(job)
            done += 1
        _event("worker.stop", worker=self.name, jobs=done)
        return done

    def handle(self, job: dict[str, Any]) -> None:
        job_id, lease = job["id"], job["lease_id"]
        _event("job.claimed", worker=self.name, job=job_id, attempt=job["attempts"])
        state: dict[str, Any] = {
            "progress": None,
            "cancel": False,
            "lost": False,
            "deadline": time.monotonic() + self.lease_seconds,
        }
        beating = threading.Event()

        def within_lease(fn: Callable[[], T], at_least: float = 0.0) -> T:
            """Retry ``fn`` on network errors and 5xx until the lease runs out."""
            return with_retries(fn, attempts=None, deadline=max(state["deadline"], time.monotonic() + at_least))

        def heartbeat_loop() -> None:
            while not beating.wait(self.heartbeat_seconds):
                sent = time.monotonic()
                try:
                    answer = within_lease(
                        lambda: self.registry.jobs.heartbeat(job_id, lease, self.lease_seconds, state["progress"])
                    )
                    state["deadline"] = sent + self.lease_seconds
                    state["cancel"] = bool(answer.get("cancel_requested"))
                except Conflict:
                    state["lost"] = True
                    return
                except (ConnectionFailed, RegistryError) as exc:
                    _event("job.heartbeat_failed", job=job_id, error=str(exc))

        def finish(call: Callable[[], object], event: str, **fields: Any) -> None:
            """A final answer (complete, fail, release): retried within the lease; a lease
            already lost or a registry gone for longer is logged, never fatal."""
            try:
                within_lease(call, at_least=_MIN_RETRY_SECONDS)
                _event(event, job=job_id, **fields)
            except Conflict:
                _event("job.lease_lost", job=job_id, **fields)
            except (ConnectionFailed, RegistryError) as exc:
                _event("job.answer_failed", job=job_id, answer=event, error=str(exc), **fields)

        def on_step(info: dict[str, Any]) -> None:
            state["progress"] = info
            if "step" in info:
                state["trained"] = info  # where training ended, for the final progress
            _event("job.progress", job=job_id, **info)

        thread = threading.Thread(target=heartbeat_loop, name=f"heartbeat-{job_id}", daemon=True)
        thread.start()
        progress = Progress(on_step=on_step, should_stop=lambda: self.stop.is_set() or state["cancel"] or state["lost"])
        try:
            spec = parse_job_spec(job["spec"])
            problem = capacity_problem(spec)
            if problem is not None:
                raise _CannotRun(problem)
            with holding_lease(job_id, lease):
                result = run_job(spec, self.registry, progress=progress, job_id=str(job_id), data_roots=self.data_roots)
        except StopRequested:
            beating.set()
            if state["lost"]:
                _event("job.lease_lost", job=job_id)
            elif state["cancel"]:
                finish(lambda: self.registry.jobs.fail(job_id, lease, "cancelled"), "job.cancelled")
            else:
                finish(lambda: self.registry.jobs.release(job_id, lease), "job.released", reason="worker stopping")
            return
        except Exception as exc:  # noqa: BLE001 — any failure of the run is reported on the job
            beating.set()
            # A missing data set or an unreachable registry may be fine on another
            # worker or later; a bad spec or a bug fails the same way everywhere.
            retry = isinstance(exc, (DataMissing, ConnectionFailed, ServerError))
            message = _message(exc)
            detail = "".join(traceback.format_exception(exc))
            log.error(json.dumps({"event": "job.traceback", "job": job_id, "traceback": detail}))
            finish(
                lambda: self.registry.jobs.fail(job_id, lease, message, retry=retry, detail=detail),
                "job.failed",
                error=message,
                retry=retry,
            )
            return
        finally:
            beating.set()
            thread.join()
        final = final_progress(state.get("trained") or state["progress"], result)
        finish(
            lambda: self.registry.jobs.complete(
                job_id, lease, result.refs, final, result=result.model_dump(mode="json")
            ),
            "job.succeeded",
            refs=result.refs,
            result=result.model_dump(mode="json"),
        )


class _CannotRun(RuntimeError):
    """This worker cannot give the job what it asks for (threads, processes)."""
