"""``partsbin bench``: the recombination matrix of stored extractors and heads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from partsbin.cli._app import PANEL_TRAINING, TokenOpt, UrlOpt, app, console, fail, note, open_registry


@app.command("bench", rich_help_panel=PANEL_TRAINING)
def bench_cmd(
    extractor: Annotated[list[str], typer.Option("--extractor", "-e", help="extractor ref (repeatable)")],
    head: Annotated[list[str], typer.Option("--head", "-H", help="head ref (repeatable)")],
    bn: Annotated[
        Literal["batch", "running", "recalibrate"],
        typer.Option(metavar="MODE", help="BatchNorm statistics: batch, running or recalibrate"),
    ] = "batch",
    batch_size: Annotated[int, typer.Option(min=2, help="images per evaluation batch")] = 256,
    batch_composition: Annotated[
        Literal["common-classes", "all-classes"],
        typer.Option(
            metavar="WHICH",
            help="what a batch holds: common-classes, the classes the pair shares (the paper's measure), "
            "or all-classes",
        ),
    ] = "common-classes",
    seed: Annotated[int, typer.Option(help="seed of the shuffle that forms the batches")] = 0,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads [default: the CPUs available to this process]")
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            metavar="TASK=PATH",
            help="a local copy of a task's test data (checked against its card; repeatable)",
        ),
    ] = None,
    head_task: Annotated[
        bool,
        typer.Option(
            "--head-task",
            help="measure every extractor on the test set the (first) head's card records, e.g. an updated head's new task",
        ),
    ] = False,
    correlation: Annotated[
        bool, typer.Option("--correlation", help="feature cross-correlation between the extractors")
    ] = False,
    latency: Annotated[bool, typer.Option("--latency", help="latency and throughput of each assembled model")] = False,
    latency_device: Annotated[
        str, typer.Option(metavar="DEVICE", help="--latency: where to time the models (cpu, cuda, cuda:1...)")
    ] = "cpu",
    json_out: Annotated[
        str | None, typer.Option("--json", metavar="FILE", help="write the results as JSON to FILE ('-': stdout)")
    ] = None,
    heatmap: Annotated[Path | None, typer.Option(help="write a PNG heatmap of the matrix")] = None,
    no_post: Annotated[
        bool, typer.Option("--no-post", help="do not post the results to the registry as evaluations")
    ] = False,
    distributed: Annotated[
        bool,
        typer.Option(
            "--distributed", help="split the matrix into evaluate jobs for the registry's workers, and wait for them"
        ),
    ] = False,
    heads_per_job: Annotated[int, typer.Option(min=1, help="--distributed: heads per job (one extractor each)")] = 8,
    namespace: Annotated[
        str | None, typer.Option(help="--distributed: the jobs' namespace [default: the token's first]")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Recombination matrix of extractors × heads on each extractor's task test images."""
    for target in (Path(json_out) if json_out not in (None, "-") else None, heatmap):
        if target is not None and not target.parent.is_dir():
            raise fail(f"cannot write {target}: the folder {target.parent} does not exist")
    copies: dict[str, Any] = {}
    for item in data or []:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise fail(f"--data takes TASK=PATH (a task name, or an extractor's name or ref), got {item!r}")
        copies[task] = path
    with open_registry(url, token) as reg:
        if head_task:
            if copies:
                raise fail("--head-task and --data both say where the test data is: give one")
            from partsbin.client.eval_data import recorded_test_spec

            task = recorded_test_spec(reg.info(head[0]))
            copies = {e: task for e in extractor}
        result = reg.bench(
            extractor,
            head,
            data=copies,
            bn_mode=bn,
            batch_size=batch_size,
            batch_composition=batch_composition,
            shuffle_seed=seed,
            threads=threads,
            correlation=correlation,
            latency=latency,
            latency_device=latency_device,
            post=not no_post,
            distributed=distributed,
            heads_per_job=heads_per_job,
            namespace=namespace,
        )
    # The figures are written before anything else can fail: a measurement is never lost.
    if json_out == "-":
        print(result.to_json())
    elif json_out:
        Path(json_out).write_text(result.to_json())
    if heatmap:
        note(f"heatmap: {result.heatmap(heatmap)}")
    if json_out != "-":
        console.print(result.rich_table())
        if result.threads:
            note(f"{result.threads} CPU threads")
        for pair, c in result.correlation.items():
            console.print(
                f"feature correlation {pair}: {c['direct']:.3f} (best permutation {c['best_permutation']:.3f})"
            )
        if latency:
            for c in result.cells:
                console.print(
                    f"{c.extractor} + {c.head}: {c.latency_ms:.1f} ms per batch of {batch_size} on {latency_device}, "
                    f"{c.images_per_s:.0f} images/s"
                )
    if result.post_error:
        saved = f" (the results are in {json_out})" if json_out not in (None, "-") else ""
        raise fail(f"{result.post_error}{saved}", code=1)
