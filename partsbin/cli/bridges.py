"""Bridge commands: ``stitch`` (an adapter between parts trained apart), ``fct`` (a Forward
Compatible Training transform) and ``paths``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from partsbin.cli._app import PANEL_TRAINING, JsonOpt, TokenOpt, UrlOpt, app, console, fail, open_registry, print_json


def _data_spec(text: str | None) -> dict[str, Any] | None:
    """A data spec: inline JSON, or a path to a JSON/YAML file."""
    if text is None:
        return None
    if text.lstrip().startswith("{"):
        try:
            return dict(json.loads(text))
        except ValueError as exc:
            raise fail(f"--data is not valid JSON: {exc}") from None
    import yaml

    try:
        data = yaml.safe_load(Path(text).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"cannot read --data {text}: {exc}") from None
    if not isinstance(data, dict):
        raise fail(f"--data {text} must hold a data spec (a mapping: source, classes, indices, transforms)")
    return data


@app.command(rich_help_panel=PANEL_TRAINING)
def stitch(
    extractor: Annotated[str, typer.Option("--extractor", help="ref of the extractor (the bridge's 'from')")],
    head: Annotated[str, typer.Option("--head", help="ref of the head its features go to")],
    name: Annotated[str, typer.Option("--name", help="the adapter's name, NAMESPACE/NAME")],
    data: Annotated[
        str | None,
        typer.Option("--data", help="labelled training data: a data spec as JSON or a file (default: the extractor's)"),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="training steps (method 'trained')")] = 200,
    method: Annotated[str, typer.Option("--method", help="trained, least-squares or procrustes")] = "trained",
    to_group: Annotated[
        bool, typer.Option("--to-group", help="bridge to the head's group, not the head alone")
    ] = False,
    local: Annotated[bool, typer.Option("--local", help="run here instead of submitting a job")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Make an adapter (a 1×1 convolution + BatchNorm) from EXTRACTOR's features to HEAD, both frozen."""
    from pydantic import ValidationError

    from partsbin.client.bridges import stitch_spec
    from partsbin.parts.job_specs import parse_job_spec
    from partsbin.parts.messages import describe_validation_error

    if "/" not in name:
        raise fail("--name is NAMESPACE/NAME")
    try:
        # The same spec Registry.stitch submits.
        raw = stitch_spec(
            extractor,
            head,
            name,
            data=_data_spec(data) if data is not None else None,
            steps=steps,
            method=method,
            to_group=to_group,
        )
    except ValidationError as exc:
        raise fail(f"invalid stitch: {describe_validation_error(exc)}") from None
    _submit_or_run(parse_job_spec(raw), local, url, token, f"publishing the adapter {name}")


def _submit_or_run(spec: Any, local: bool, url: str | None, token: str | None, action: str) -> None:
    """Submit ``spec`` as a job, or (``--local``) run it here and publish what it makes."""
    if not local:
        with open_registry(url, token) as reg:
            job = reg.jobs.submit(spec.model_dump(mode="json"))
        console.print(f"submitted job {job['id']} ({job['status']}); follow it with `partsbin jobs show {job['id']}`")
        return
    from partsbin.cli.training import publishing_registry
    from partsbin.trainer.jobs import run_job

    with publishing_registry(url, token) as reg:
        reg.check_can_publish(spec.namespace, action)
        result = run_job(spec, reg)
    for line in result.lines:
        console.print(line)
    for ref in result.refs:
        console.print(f"published {ref}")


@app.command(rich_help_panel=PANEL_TRAINING)
def fct(
    old: Annotated[str, typer.Option("--old", help="ref of the old extractor (the bridge's 'from')")],
    new: Annotated[str, typer.Option("--new", help="ref of the new extractor (the bridge's 'to')")],
    name: Annotated[str, typer.Option("--name", help="the transform's name, NAMESPACE/NAME")],
    space: Annotated[
        str,
        typer.Option(
            "--space", help="embedding (a stored gallery of pooled features) or junction (for the new model's head)"
        ),
    ] = "embedding",
    side_info: Annotated[
        str,
        typer.Option("--side-info", help="'train' (on the old data), 'none', or the ref of a stored side-info model"),
    ] = "train",
    data: Annotated[
        str | None,
        typer.Option("--data", help="the transform's training images: a data spec as JSON or a file (default: new's)"),
    ] = None,
    new_head: Annotated[
        str | None,
        typer.Option("--new-head", help="junction space: the new model's head, measured on transformed old features"),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="transform training steps")] = 800,
    images: Annotated[
        int | None,
        typer.Option("--images", help="fit on this many training images (default: 20,000; junction space 5,000)"),
    ] = None,
    test_limit: Annotated[int, typer.Option("--test-limit", help="measure on the first N test images")] = 2000,
    local: Annotated[bool, typer.Option("--local", help="run here instead of submitting a job")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Make a Forward Compatible Training transform from OLD's features (+ side-information) to NEW's."""
    from pydantic import ValidationError

    from partsbin.client.bridges import fct_spec
    from partsbin.parts.job_specs import parse_job_spec
    from partsbin.parts.messages import describe_validation_error

    if "/" not in name:
        raise fail("--name is NAMESPACE/NAME")
    side: bool | str = {"train": True, "true": True, "none": False, "false": False}.get(side_info.lower(), side_info)
    try:
        # The same spec Registry.fct submits.
        raw = fct_spec(
            old,
            new,
            name,
            space=space,
            side_info=side,
            data=_data_spec(data) if data is not None else None,
            steps=steps,
            new_head=new_head,
            images=images,
            test_limit=test_limit,
        )
    except ValidationError as exc:
        raise fail(f"invalid fct: {describe_validation_error(exc)}") from None
    _submit_or_run(parse_job_spec(raw), local, url, token, f"publishing the transform {name}")


@app.command(rich_help_panel=PANEL_TRAINING)
def paths(
    extractor: Annotated[str, typer.Option("--extractor", help="ref of the extractor")],
    head: Annotated[str, typer.Option("--head", help="ref of the head")],
    max_bridges: Annotated[int | None, typer.Option("--max-bridges", help="longest chain of bridges")] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Ways from EXTRACTOR to HEAD: direct (a shared group), or through bridges; best first."""
    with open_registry(url, token) as reg:
        found = reg.paths(extractor=extractor, head=head, max_bridges=max_bridges)
    if json_out:
        print_json(found)
        return
    if not found["paths"]:
        console.print(f"no path from {extractor} to {head}: no shared group and no bridge is known")
        return
    for i, p in enumerate(found["paths"], 1):
        acc = "unmeasured" if p["measured_accuracy"] is None else f"measured {p['measured_accuracy']:.1%}"
        console.print(f"{i}. {p['kind']} ({len(p['bridges'])} bridges, {acc})")
        for step in p["steps"]:
            console.print(f"   - {step['why']}")
