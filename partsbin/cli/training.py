"""Training commands: ``train``, ``worker``, ``jobs``, ``demo``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from partsbin.cli._app import (
    PANEL_TRAINING,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    app,
    console,
    err,
    fail,
    note,
    open_registry,
    print_json,
    table,
)

jobs_app = typer.Typer(help="Training jobs in the registry's queue.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs", rich_help_panel=PANEL_TRAINING)


def _load_spec(path: Path) -> Any:
    import yaml
    from pydantic import ValidationError

    from partsbin.parts.job_specs import UnknownJobKind, parse_job_spec

    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    try:
        return parse_job_spec(data)
    except UnknownJobKind as exc:
        raise fail(f"invalid spec {path}: kind: {exc}") from None
    except ValidationError as exc:
        from partsbin.parts.messages import describe_validation_error

        raise fail(f"invalid spec {path}: {describe_validation_error(exc)}") from None


@contextmanager
def publishing_registry(url: str | None = None, token: str | None = None) -> Iterator[Any]:
    """--url / PARTSBIN_URL when given, else the embedded registry in the data folder."""
    import os

    from partsbin.client.registry import Registry

    if url or os.environ.get("PARTSBIN_URL"):
        with Registry(url=url, token=token, progress=sys.stderr.isatty()) as reg:
            yield reg
        return
    from partsbin.registry.embedded import embedded_registry

    with embedded_registry() as emb, Registry(url=emb.url, token=emb.token) as reg:
        err.print(f"publishing to the embedded registry in {emb.settings.data_dir.resolve()}")
        yield reg


class _TrainingProgress:
    """A progress bar on a terminal; plain lines (step, loss, images/s) every few seconds
    otherwise, so that a run logged to a file is not silent until it ends."""

    EVERY_SECONDS = 10.0

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar: Any = None
        self.last = 0.0

    def __enter__(self) -> _TrainingProgress:
        if err.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(self.name, total=None, status="starting: loading data and building networks")
        else:
            note(f"{self.name}: starting")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def on_step(self, info: dict[str, Any]) -> None:
        import time

        status = f"step {info['step']}/{info['total']}"
        if info.get("loss") is not None:
            status += f"  loss {info['loss']:.3f}"
        if info.get("images_per_s"):
            status += f"  {info['images_per_s']:.0f} img/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=info["step"], total=info["total"], status=status)
        elif time.monotonic() - self.last >= self.EVERY_SECONDS or info["step"] == info["total"]:
            self.last = time.monotonic()
            note(f"{self.name}: {status}")


@app.command(rich_help_panel=PANEL_TRAINING)
def train(
    spec_file: Annotated[Path | None, typer.Argument(metavar="SPEC", help="training spec, YAML or JSON")] = None,
    local: Annotated[bool, typer.Option("--local", help="train in this process instead of submitting a job")] = False,
    schema: Annotated[bool, typer.Option("--schema", help="print the spec's JSON Schema and exit")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Train compatible components: submit SPEC as a job, or run it here with --local."""
    from partsbin.parts.job_specs import job_specs_schema

    if schema:
        print(json.dumps(job_specs_schema(), indent=2))
        return
    if spec_file is None:
        raise fail("give a SPEC file (or --schema)")
    spec = _load_spec(spec_file)
    if not local:
        with open_registry(url, token) as reg:
            job = reg.jobs.submit(spec.model_dump(mode="json"))
        console.print(f"submitted job {job['id']} ({job['status']}); follow it with `partsbin jobs show {job['id']}`")
        return
    from partsbin.trainer.engine import Progress
    from partsbin.trainer.jobs import run_job

    with publishing_registry(url, token) as reg:
        if spec.publish:
            # Minutes of training must not end in "publishing needs a token".
            reg.check_can_publish(spec.namespace, f"publishing the results of {spec_file}")
        with _TrainingProgress(spec.name) as shown:
            result = run_job(spec, reg if spec.publish else None, progress=Progress(on_step=shown.on_step))
    for line in result.lines:
        console.print(line)
    for ref in result.refs:
        console.print(f"published {ref}")


@app.command(rich_help_panel=PANEL_TRAINING)
def worker(
    name: Annotated[str | None, typer.Option(help="worker name (default: host-random)")] = None,
    lease: Annotated[float, typer.Option(help="lease length in seconds")] = 60.0,
    poll: Annotated[float, typer.Option(help="seconds between claims when the queue is empty")] = 2.0,
    once: Annotated[bool, typer.Option(help="exit when the queue is empty")] = False,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads [default: the CPUs available to this process]")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Take training jobs from the registry until stopped (SIGTERM releases the job in hand)."""
    import logging
    import signal

    import torch

    from partsbin.parts.cpus import available_cpus
    from partsbin.trainer.worker import Worker

    torch.set_num_threads(threads or available_cpus())

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # The worker's lines are JSON objects; httpx's own "HTTP Request: ..." lines are not.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with open_registry(url, token) as reg:
        w = Worker(reg, name=name, lease_seconds=lease, poll_seconds=poll)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: w.stop.set())
        w.run(exit_when_idle=once)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[
        Literal["queued", "running", "succeeded", "failed", "cancelled"] | None,
        typer.Option(help="queued, running, succeeded, failed or cancelled"),
    ] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List jobs."""
    with open_registry(url, token) as reg:
        jobs = reg.jobs.list(status=status)
    if json_out:
        print_json(jobs)
        return
    if not jobs:
        note(f"no {status} jobs" if status else "no jobs")
        return
    t = table("id", "status", "namespace", "name", "attempts", "worker", "progress", "error")
    for j in jobs:
        p = j.get("progress") or {}
        prog = f"{p.get('step')}/{p.get('total')}" if p else ""
        if p.get("loss") is not None:
            prog += f" loss {p['loss']:.3f}"
        error = (j.get("error") or "").strip().splitlines()[-1:]
        t.add_row(
            str(j["id"]),
            j["status"],
            j["namespace"],
            j["spec"].get("name", ""),
            f"{j['attempts']}/{j['max_attempts']}",
            j.get("worker") or "",
            prog,
            error[0] if error else "",
        )
    console.print(t)


@jobs_app.command("show")
def jobs_show(job_id: int, json_out: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show a job: its state, progress or final result, and what it published."""
    with open_registry(url, token) as reg:
        job = reg.jobs.get(job_id)
    if json_out:
        print_json(job)
        return
    _render_job(job)


@jobs_app.command("cancel")
def jobs_cancel(job_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a job (a running one stops at its next step)."""
    with open_registry(url, token) as reg:
        job = reg.jobs.cancel(job_id)
    console.print(f"job {job_id}: {job['status']}{' (cancel requested)' if job['cancel_requested'] else ''}")


def _render_job(job: dict[str, Any]) -> None:
    from rich.tree import Tree

    spec = job["spec"]
    tree = Tree(f"job {job['id']}: {spec.get('name', '')} ({job['status']}), namespace {job['namespace']}")
    tree.add(f"attempts {job['attempts']}/{job['max_attempts']}, worker {job.get('worker') or '-'}")
    tree.add(
        f"submitted {job['created_at']}, started {job.get('started_at') or '-'}, finished {job.get('finished_at') or '-'}"
    )
    p = job.get("progress") or {}
    if p:
        final = job["status"] == "succeeded"
        line = f"{'final' if final else 'last reported'}: step {p.get('step')}/{p.get('total')}"
        if p.get("loss") is not None:
            line += f", loss {p['loss']:.3f}"
        if p.get("images_per_s"):
            line += f", {p['images_per_s']:.0f} images/s"
        node = tree.add(line)
        for task, acc in (p.get("accuracy") or {}).items():
            node.add(f"task {task}: own-task accuracy {acc:.1%}")
    if job.get("result_refs"):
        published = tree.add("published")
        for ref in job["result_refs"]:
            published.add(ref)
    if job.get("error"):
        tree.add(f"error: {job['error'].strip().splitlines()[-1]}")
    console.print(tree)


@app.command(rich_help_panel=PANEL_TRAINING)
def demo(
    steps: Annotated[int, typer.Option(help="training steps per network")] = 150,
    out: Annotated[Path, typer.Option(help="folder for the heatmaps")] = Path("partsbin-demo"),
) -> None:
    """Train two compatible networks on the digits pair, recombine them, and benchmark."""
    from partsbin.trainer.demo import run_demo

    with publishing_registry() as reg:
        result = run_demo(reg, steps=steps, out_dir=out, console=console)
    console.print(f"demo finished in {result.seconds:.0f} s")
