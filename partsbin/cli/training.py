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


def _load_spec(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise fail(f"invalid spec {path}: a job spec is a mapping (kind, name, namespace, ...)")
    return data


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


class TrainingProgress:
    """A progress bar on a terminal; plain lines (where the job is, in its spec's terms)
    every few seconds otherwise, so that a run logged to a file is not silent until it ends."""

    EVERY_SECONDS = 10.0

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar: Any = None
        self.last = 0.0
        self.shown = ""

    def __enter__(self) -> TrainingProgress:
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
            self.task = self.bar.add_task(self.name, total=None, status="starting")
        else:
            note(f"{self.name}: starting")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def on_step(self, info: dict[str, Any]) -> None:
        import time

        from partsbin.parts.jobs.spec import progress_line

        status = progress_line(info)
        if self.bar is not None:
            total, done = info.get("total"), info.get("done")
            self.bar.update(self.task, completed=done or 0, total=total or None, status=status)
        elif status != self.shown and (
            time.monotonic() - self.last >= self.EVERY_SECONDS or info.get("done") == info.get("total")
        ):
            self.last, self.shown = time.monotonic(), status
            note(f"{self.name}: {status}")


@app.command(rich_help_panel=PANEL_TRAINING)
def train(
    spec_file: Annotated[Path | None, typer.Argument(metavar="SPEC", help="training spec, YAML or JSON")] = None,
    local: Annotated[bool, typer.Option("--local", help="train in this process instead of submitting a job")] = False,
    schema: Annotated[bool, typer.Option("--schema", help="print the spec's JSON Schema and exit")] = False,
    example: Annotated[
        str | None,
        typer.Option(
            "--example",
            metavar="KIND",
            help="print a spec of job kind KIND to start from (every field, each described) and exit",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="wait for the submitted job and print its result")] = False,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Run a job of any kind from a SPEC file (YAML or JSON): submit it, or run it here with --local."""
    from partsbin.cli.job_verbs import run_or_submit
    from partsbin.parts.jobs import job_specs_schema

    if schema:
        print(json.dumps(job_specs_schema(), indent=2))
        return
    if example is not None:
        from partsbin.parts.jobs import job_kinds
        from partsbin.parts.jobs.examples import example_yaml

        if example not in job_kinds():
            raise fail(f"no job kind {example!r}: --example takes one of {', '.join(sorted(job_kinds()))}")
        print(example_yaml(example), end="")
        return
    if spec_file is None:
        raise fail("give a SPEC file (or --example KIND to start one, or --schema)")
    run_or_submit(_load_spec(spec_file), local=local, wait=wait, json_out=json_out, url=url, token=token)


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
    from partsbin.parts.jobs.spec import progress_line

    t = table("id", "kind", "status", "namespace", "name", "attempts", "worker", "progress", "error")
    for j in jobs:
        p = j.get("progress") or {}
        t.add_row(
            str(j["id"]),
            j.get("kind", ""),
            j["status"],
            j["namespace"],
            j["spec"].get("name", ""),
            f"{j['attempts']}/{j['max_attempts']}",
            j.get("worker") or "",
            progress_line(p) if p else "",
            (j.get("error") or "")[:200],
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
    import yaml
    from rich.tree import Tree

    from partsbin.parts.jobs.spec import compact, duration, progress_line

    spec = job["spec"]
    tree = Tree(f"job {job['id']}: {job.get('kind', '')} {job['namespace']}/{spec.get('name', '')} ({job['status']})")
    tree.add(f"attempts {job['attempts']}/{job['max_attempts']}, worker {job.get('worker') or '-'}")
    took = ""
    if job.get("started_at") and job.get("finished_at"):
        from datetime import datetime

        seconds = (
            datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
        ).total_seconds()
        took = f" (ran {duration(seconds)})"
    tree.add(
        f"submitted {job['created_at']}, started {job.get('started_at') or '-'}, "
        f"finished {job.get('finished_at') or '-'}{took}"
    )
    p = job.get("progress") or {}
    if p and job["status"] != "succeeded":
        tree.add(f"last reported: {progress_line(p)}")
    if job.get("summary"):
        result = tree.add("result")
        for line in job["summary"]:
            result.add(line)
    elif job.get("result_refs"):
        published = tree.add("published")
        for ref in job["result_refs"]:
            published.add(ref)
    if job.get("error"):
        tree.add(f"error: {job['error'].strip()}")
    if job.get("error_detail"):
        tree.add("traceback (admin tokens see it):\n" + job["error_detail"].strip())
    node = tree.add("spec")
    node.add(yaml.safe_dump(compact(spec), sort_keys=False).rstrip())
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
