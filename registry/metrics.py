"""Prometheus metrics, served at ``/metrics`` (prometheus-client; ``api/routes/metrics.py``).

Request counts, latency, body bytes and refused uploads (by the check named in the
answer) come from the instrumentation middleware, per route *template*
(``/components/{ns}/{name}``, never the raw path, which would make a series per
component). Jobs by
state, the queue's age and the workers are read from the database at scrape time, so
they agree across several registry processes; the request metrics are per process.

Each app has its own ``CollectorRegistry`` (tests and the embedded server build several
apps in one process, and the default registry refuses a metric registered twice).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from partsbin.registry.db.models import Job, Worker, utcnow

__all__ = ["Metrics", "upload_rejection_reason", "WORKER_ACTIVE_SECONDS"]

# The ``*_created`` series (one timestamp per label set) double a scrape for nothing a
# dashboard here uses; prometheus-client's documented switch, for this process.
disable_created_metrics()

#: An idle worker claims every few seconds and a busy one heartbeats every quarter
#: lease; one not heard from in this long is not counted as active unless it still
#: holds an unexpired lease.
WORKER_ACTIVE_SECONDS = 120.0
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
# Latency buckets (seconds) from a 1 ms lookup to a multi-GB upload.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "partsbin_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "partsbin_http_request_duration_seconds",
            "Time from the request's arrival to the last byte of the answer, by route template, method and status",
            ["method", "route", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.received = Counter(
            "partsbin_http_received_bytes",
            "Request body bytes received (uploads), by route template",
            ["route"],
            registry=self.registry,
        )
        self.sent = Counter(
            "partsbin_http_sent_bytes",
            "Response body bytes sent (downloads), by route template",
            ["route"],
            registry=self.registry,
        )
        self.upload_rejections = Counter(
            "partsbin_upload_rejections",
            "Uploads refused by a check, by the check that failed",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_QueueCollector(sessions))

    def observe(self, method: str, route: str, status: int, seconds: float, received: int, sent: int) -> None:
        code = str(status)
        self.requests.labels(method, route, code).inc()
        self.latency.labels(method, route, code).observe(seconds)
        if received:
            self.received.labels(route).inc(received)
        if sent:
            self.sent.labels(route).inc(sent)


# What a refused upload is counted as where the answer names no check (X-Upload-Check).
_REASON_OF_CODE = {"too_large": "too_large", "invalid_request": "form", "forbidden": "namespace"}


def upload_rejection_reason(status: int, headers: dict[bytes, bytes]) -> str | None:
    """The check that refused an upload, from ``POST /components``' answer; None if it was not refused by one."""
    if not 400 <= status < 500:
        return None
    check = headers.get(b"x-upload-check")
    if check:
        return check.decode("latin-1")
    return _REASON_OF_CODE.get(headers.get(b"x-error-code", b"").decode("latin-1"))


class _QueueCollector(Collector):
    """Jobs by state, the age of the oldest queued job, and the workers, read at scrape time."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        with self.sessions() as session:
            counts = dict(session.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status)).all())
            oldest = session.scalar(sa.select(Job.created_at).where(Job.status == "queued").order_by(Job.id).limit(1))
            recent = now - timedelta(seconds=WORKER_ACTIVE_SECONDS)
            holding = sa.select(Job.worker).where(Job.status == "running", Job.lease_expires_at > now)
            workers = session.execute(
                sa.select(Worker.name, Worker.last_seen_at).where(
                    sa.or_(Worker.last_seen_at > recent, Worker.name.in_(holding))
                )
            ).all()
        jobs = GaugeMetricFamily("partsbin_jobs", "Jobs in the queue's table, by state", labels=["state"])
        for state in JOB_STATES:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        age = 0.0 if oldest is None else (now - _aware(oldest)).total_seconds()
        yield GaugeMetricFamily(
            "partsbin_job_queue_oldest_age_seconds", "Age of the oldest queued job (0 when none waits)", value=age
        )
        yield GaugeMetricFamily(
            "partsbin_workers_active",
            f"Workers heard from (claim or heartbeat) in the last {WORKER_ACTIVE_SECONDS:.0f} s, or holding a lease",
            value=len(workers),
        )
        seen = GaugeMetricFamily(
            "partsbin_worker_last_seen_timestamp_seconds",
            "When each active worker was last heard from (Unix time)",
            labels=["worker"],
        )
        for name, at in workers:
            seen.add_metric([name], _aware(at).timestamp())
        yield seen


def _aware(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written as UTC.
    return dt if dt.tzinfo else dt.replace(tzinfo=utcnow().tzinfo)
