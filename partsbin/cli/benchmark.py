"""``partsbin bench``: the recombination matrix of stored extractors and heads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from partsbin.cli._app import TokenOpt, UrlOpt, app, console, fail, open_registry


@app.command("bench")
def bench_cmd(
    extractor: Annotated[list[str], typer.Option("--extractor", "-e", help="extractor ref (repeatable)")],
    head: Annotated[list[str], typer.Option("--head", "-h", help="head ref (repeatable)")],
    bn: Annotated[str, typer.Option(help="batch, running or recalibrate")] = "batch",
    batch_size: int = 256,
    correlation: Annotated[bool, typer.Option(help="feature cross-correlation between the extractors")] = False,
    latency: Annotated[bool, typer.Option(help="latency and throughput of each assembled model")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results as JSON")] = None,
    heatmap: Annotated[Path | None, typer.Option(help="write a PNG heatmap of the matrix")] = None,
    post: Annotated[bool, typer.Option(help="post the results to the registry as evaluations")] = True,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Recombination matrix of extractors × heads on each extractor's task test images."""
    if bn not in ("batch", "running", "recalibrate"):
        raise fail("--bn must be batch, running or recalibrate")
    with open_registry(url, token) as reg:
        result = reg.bench(
            extractor, head, bn_mode=bn, batch_size=batch_size, correlation=correlation, latency=latency, post=post
        )
    console.print(result.table())
    for pair, c in result.correlation.items():
        console.print(f"feature correlation {pair}: {c['direct']:.3f} (best permutation {c['best_permutation']:.3f})")
    if latency:
        for c in result.cells:
            console.print(
                f"{c.extractor} + {c.head}: {c.latency_ms:.1f} ms per batch of {batch_size}, {c.images_per_s:.0f} images/s"
            )
    if json_out:
        json_out.write_text(result.to_json())
    if heatmap:
        console.print(f"heatmap: {result.heatmap(heatmap)}")
