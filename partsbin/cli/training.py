"""Training commands: ``train``, ``worker``, ``jobs``, ``demo``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from partsbin.cli._app import TokenOpt, UrlOpt, app, console, err, fail, open_registry

jobs_app = typer.Typer(help="Training jobs in the registry's queue.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


def _load_spec(path: Path) -> Any:
    import yaml
    from pydantic import ValidationError

    from partsbin.parts.training_spec import TrainSpec

    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    try:
        return TrainSpec.model_validate(data)
    except ValidationError as exc:
        from partsbin.parts.messages import describe_validation_error

        raise fail(f"invalid spec {path}: {describe_validation_error(exc)}") from None


@contextmanager
def publishing_registry() -> Iterator[Any]:
    """PARTSBIN_URL when set, else the embedded registry in the data folder."""
    import os

    from partsbin.client.registry import Registry

    if os.environ.get("PARTSBIN_URL"):
        with Registry(progress=sys.stderr.isatty()) as reg:
            yield reg
        return
    from partsbin.registry.embedded import embedded_registry

    with embedded_registry() as emb, Registry(url=emb.url, token=emb.token) as reg:
        err.print(f"publishing to the embedded registry in {emb.settings.data_dir.resolve()}")
        yield reg


def _progress_bar() -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("step {task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[ips]:.0f} img/s"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


@app.command()
def train(
    spec_file: Annotated[Path | None, typer.Argument(metavar="SPEC", help="training spec, YAML or JSON")] = None,
    local: Annotated[bool, typer.Option("--local", help="train in this process instead of submitting a job")] = False,
    schema: Annotated[bool, typer.Option("--schema", help="print the spec's JSON Schema and exit")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Train compatible components: submit SPEC as a job, or run it here with --local."""
    from partsbin.parts.training_spec import TrainSpec

    if schema:
        print(json.dumps(TrainSpec.model_json_schema(), indent=2))
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
    from partsbin.trainer.run import run

    with publishing_registry() as reg, _progress_bar() as bar:
        task = bar.add_task(spec.name, total=None, loss=float("nan"), ips=0.0)

        def on_step(info: dict[str, Any]) -> None:
            bar.update(task, completed=info["step"], total=info["total"], loss=info["loss"], ips=info["images_per_s"])

        result = run(spec, reg if spec.publish else None, progress=Progress(on_step=on_step))
    for name, m in result.metrics.items():
        if name != "train":
            console.print(f"task {name}: own-task accuracy {m['own_task_accuracy']:.1%} on {m['n']} test images")
    console.print(
        f"{result.metrics['train']['images_per_s']:.0f} images/s over {result.metrics['train']['seconds']:.0f} s"
    )
    for ref in result.refs:
        console.print(f"published {ref}")


@app.command()
def worker(
    name: Annotated[str | None, typer.Option(help="worker name (default: host-random)")] = None,
    lease: Annotated[float, typer.Option(help="lease length in seconds")] = 60.0,
    poll: Annotated[float, typer.Option(help="seconds between claims when the queue is empty")] = 2.0,
    once: Annotated[bool, typer.Option(help="exit when the queue is empty")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Take training jobs from the registry until stopped (SIGTERM releases the job in hand)."""
    import logging
    import signal

    from partsbin.trainer.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with open_registry(url, token) as reg:
        w = Worker(reg, name=name, lease_seconds=lease, poll_seconds=poll)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: w.stop.set())
        w.run(exit_when_idle=once)


@jobs_app.command("list")
def jobs_list(status: str | None = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List jobs."""
    with open_registry(url, token) as reg:
        jobs = reg.jobs.list(status=status)
    table = Table("id", "status", "namespace", "name", "attempts", "worker", "progress", "error")
    for j in jobs:
        p = j.get("progress") or {}
        prog = f"{p.get('step')}/{p.get('total')} loss {p.get('loss', float('nan')):.3f}" if p else ""
        error = (j.get("error") or "").strip().splitlines()[-1:]
        table.add_row(
            str(j["id"]),
            j["status"],
            j["namespace"],
            j["spec"].get("name", ""),
            f"{j['attempts']}/{j['max_attempts']}",
            j.get("worker") or "",
            prog,
            error[0] if error else "",
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show a job."""
    with open_registry(url, token) as reg:
        console.print_json(json.dumps(reg.jobs.get(job_id)))


@jobs_app.command("cancel")
def jobs_cancel(job_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a job (a running one stops at its next step)."""
    with open_registry(url, token) as reg:
        job = reg.jobs.cancel(job_id)
    console.print(f"job {job_id}: {job['status']}{' (cancel requested)' if job['cancel_requested'] else ''}")


@app.command()
def demo(
    steps: Annotated[int, typer.Option(help="training steps per network")] = 150,
    out: Annotated[Path, typer.Option(help="folder for the heatmaps")] = Path("partsbin-demo"),
) -> None:
    """Train two compatible networks on the digits pair, recombine them, and benchmark."""
    from partsbin.trainer.demo import run_demo

    with publishing_registry() as reg:
        result = run_demo(reg, steps=steps, out_dir=out, console=console)
    console.print(f"demo finished in {result.seconds:.0f} s")
