"""Using compatible parts (paper §5): ``partsbin adapt`` and ``partsbin transfer``.

Each submits a job of its kind and waits for a worker to run it (``--no-wait`` returns at
once; ``--local`` runs it in this process, publishing to ``--url`` or the embedded
registry), then prints what was published and measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from partsbin.cli._app import PANEL_TRAINING, JsonOpt, TokenOpt, UrlOpt, app, console, fail, note, open_registry

DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        metavar="DATASPEC",
        help='the data spec: inline JSON (\'{"source": "digits", "transforms": [...]}\') or a YAML/JSON file',
    ),
]
TestOpt = Annotated[
    str | None,
    typer.Option("--test", metavar="DATASPEC", help="labelled test data [default: --data's test split]"),
]


def parse_data_spec(value: str, option: str = "--data") -> dict[str, Any]:
    """A DataSpec from inline JSON or a YAML/JSON file, validated (the message names the field)."""
    import yaml
    from pydantic import ValidationError

    from partsbin.parts.messages import describe_validation_error
    from partsbin.parts.training_spec import DataSpec

    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise fail(f"{option}: {value!r} is neither inline JSON (starting with '{{') nor a file")
        text = path.read_text()
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise fail(f"{option}: cannot parse {value!r}: {exc}") from None
    try:
        return DataSpec.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise fail(f"{option}: {describe_validation_error(exc)}") from None


def _run_local(spec_data: dict[str, Any], url: str | None, token: str | None, json_out: bool) -> None:
    """Run the job in this process and print what it did (JSON for scripts with --json)."""
    from pydantic import ValidationError

    from partsbin.cli.training import _TrainingProgress, publishing_registry
    from partsbin.parts.job_specs import parse_job_spec
    from partsbin.parts.messages import describe_validation_error
    from partsbin.trainer.engine import Progress
    from partsbin.trainer.jobs import run_job

    try:
        spec = parse_job_spec(spec_data)
    except ValidationError as exc:
        raise fail(f"invalid {spec_data['kind']} job: {describe_validation_error(exc)}") from None
    with publishing_registry(url, token) as reg:
        reg.check_can_publish(spec.namespace, f"the {spec.kind} job {spec.name}")
        with _TrainingProgress(spec.name) as shown:
            result = run_job(spec, reg, progress=Progress(on_step=shown.on_step))
    if json_out:
        print(json.dumps({"refs": result.refs, "metrics": result.metrics}, indent=2, default=str))
        return
    for line in result.lines:
        console.print(line)


def _settings(steps: int | None, lr: float | None, batch_size: int | None, threads: int | None) -> dict[str, Any]:
    given = {"steps": steps, "lr": lr, "batch_size": batch_size, "threads": threads}
    return {k: v for k, v in given.items() if v is not None}


@app.command(rich_help_panel=PANEL_TRAINING)
def adapt(
    extractor: Annotated[str, typer.Option("--extractor", "-e", help="ref of the source extractor")],
    rp_head: Annotated[str, typer.Option("--rp-head", help="ref of the RP aux head it was trained against")],
    data: DataOpt,
    test: TestOpt = None,
    head: Annotated[
        str | None, typer.Option("--head", help="the source task head for the evaluations [default: its sibling]")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="adaptation steps")] = 1000,
    lr: Annotated[float | None, typer.Option(help="learning rate [default: 0.01]")] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, help="target images per step [default: 64]")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads")] = None,
    name: Annotated[str | None, typer.Option(help="run name [default: the extractor's name + '-adapted']")] = None,
    namespace: Annotated[
        str | None, typer.Option(help="namespace to publish into [default: the token's first]")
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="run here instead of submitting a job")] = False,
    wait: Annotated[bool, typer.Option(help="wait for the job and print its results")] = True,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Adapt an extractor to unlabelled target images through its frozen RP head (paper §5.1)."""
    target = parse_data_spec(data)
    test_spec = parse_data_spec(test, "--test") if test else None
    settings = _settings(steps, lr, batch_size, threads)
    if local:
        from partsbin.client.applications import _name

        spec = {
            "kind": "adapt",
            "name": name or _name(extractor, "-adapted"),
            "namespace": namespace or extractor.partition("/")[0],
            "extractor": extractor,
            "rp_head": rp_head,
            "data": target,
            "test": test_spec,
            "head": head,
            "settings": settings,
        }
        _run_local(spec, url, token, json_out)
        return
    with open_registry(url, token) as reg:
        out = reg.adapt(
            extractor,
            rp_head,
            target,
            test=test_spec,
            head=head,
            name=name,
            namespace=namespace,
            settings=settings,
            wait=wait,
        )
    if json_out:
        print(json.dumps({"job": out.job["id"], "adapted": out.adapted, "rows": out.rows}, indent=2))
        return
    if not wait:
        note(f"submitted adapt job {out.job['id']}; follow it with `partsbin jobs show {out.job['id']}`")
        return
    console.print(f"published {out.adapted} (adapted from {extractor})")
    for row, acc in out.rows.items():
        console.print(f"{row}: {acc:.1%} on the target test set")


def _steps(value: str) -> list[int]:
    try:
        steps = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise fail(f"--steps takes counts separated by commas (0,50,100), got {value!r}") from None
    if not steps or any(s < 0 for s in steps):
        raise fail(f"--steps takes counts of 0 or more separated by commas, got {value!r}")
    return steps


@app.command(rich_help_panel=PANEL_TRAINING)
def transfer(
    extractor: Annotated[str, typer.Option("--extractor", "-e", help="ref of the source extractor")],
    head: Annotated[str, typer.Option("--head", "-H", help="ref of the target task head")],
    data: DataOpt,
    test: TestOpt = None,
    steps: Annotated[str, typer.Option(help="measure after these many fine-tuning steps (0 = recombined)")] = "0",
    lr: Annotated[float | None, typer.Option(help="learning rate [default: 0.01]")] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, help="images per step [default: 64]")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads")] = None,
    publish: Annotated[bool, typer.Option("--publish", help="publish the fine-tuned extractor and head")] = False,
    name: Annotated[str | None, typer.Option(help="run name [default: the extractor's name + '-transfer']")] = None,
    namespace: Annotated[
        str | None, typer.Option(help="namespace to publish into [default: the token's first]")
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="run here instead of submitting a job")] = False,
    wait: Annotated[bool, typer.Option(help="wait for the job and print its results")] = True,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Recombine an extractor with a target head, fine-tune, and measure after each of --steps (paper §5.3)."""
    target = parse_data_spec(data)
    test_spec = parse_data_spec(test, "--test") if test else None
    points = _steps(steps)
    settings = _settings(None, lr, batch_size, threads)
    if local:
        from partsbin.client.applications import _name

        spec = {
            "kind": "transfer",
            "name": name or _name(extractor, "-transfer"),
            "namespace": namespace or extractor.partition("/")[0],
            "extractor": extractor,
            "head": head,
            "data": target,
            "test": test_spec,
            "steps": points,
            "settings": settings,
            "publish": publish,
        }
        _run_local(spec, url, token, json_out)
        return
    with open_registry(url, token) as reg:
        out = reg.transfer(
            extractor,
            head,
            target,
            test=test_spec,
            steps=points,
            name=name,
            namespace=namespace,
            settings=settings,
            publish=publish,
            wait=wait,
        )
    if json_out:
        print(json.dumps({"job": out.job["id"], "curve": out.curve, "refs": out.refs}, indent=2))
        return
    if not wait:
        note(f"submitted transfer job {out.job['id']}; follow it with `partsbin jobs show {out.job['id']}`")
        return
    for s, acc in out.curve:
        console.print(f"after {s} steps: {acc:.1%}")
    for ref in out.refs:
        console.print(f"published {ref}")
