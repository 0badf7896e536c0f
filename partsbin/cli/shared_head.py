"""``partsbin update-head``: extend a shared head to new classes once, for every extractor of its group (§5.2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from partsbin.cli._app import PANEL_TRAINING, TokenOpt, UrlOpt, app, console, fail, open_registry


def _data_spec(text: str, option: str) -> dict[str, Any]:
    """A data spec given inline as JSON, as a JSON/YAML file, or as a bare source name."""
    import yaml

    path = Path(text)
    try:
        if text.lstrip().startswith("{"):
            value = json.loads(text)
        elif path.is_file():
            value = yaml.safe_load(path.read_text())
        else:
            value = {"source": text}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise fail(f"{option}: cannot read {text!r}: {exc}") from None
    if not isinstance(value, dict):
        raise fail(f"{option} takes a data spec: a JSON object, a file holding one, or a source name")
    return value


@app.command("update-head", rich_help_panel=PANEL_TRAINING)
def update_head(
    head: Annotated[str, typer.Option("--head", help="ref of the head to extend (a shared DCC head or a task head)")],
    reference_extractor: Annotated[
        str, typer.Option("--reference-extractor", help="ref of the frozen extractor the head is fine-tuned on")
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            metavar="DATASPEC",
            help="training data: a source name (fashion-mnist), a JSON object or a JSON/YAML file",
        ),
    ],
    classes: Annotated[
        str, typer.Option("--classes", help="every class of the updated head, comma-separated (old ones included)")
    ],
    test: Annotated[
        str | None, typer.Option("--test", metavar="DATASPEC", help="test data [default: the test split of --data]")
    ] = None,
    test_limit: Annotated[int | None, typer.Option(min=1, help="evaluate on the first N test images")] = None,
    steps: Annotated[int, typer.Option(min=1, help="fine-tuning steps")] = 300,
    lr: Annotated[float, typer.Option(min=0, help="learning rate")] = 0.01,
    batch_size: Annotated[int, typer.Option(min=2, help="images per step")] = 64,
    seed: Annotated[int, typer.Option(help="seed of the new classifier rows and the batches")] = 0,
    reference_bn: Annotated[
        Literal["batch", "running"],
        typer.Option(help="BatchNorm of the frozen reference extractor: the batch's statistics or its stored ones"),
    ] = "batch",
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads [default: the CPUs available to the process]")
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="run here instead of submitting a job")] = False,
    wait: Annotated[bool, typer.Option(help="wait for the job and print the new version")] = True,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Extend HEAD to new classes on the frozen features of one reference extractor, and publish
    it as HEAD's next version: still in its group, so every extractor trained against it can use it."""
    from pydantic import ValidationError

    from partsbin.parts.messages import describe_validation_error
    from partsbin.parts.shared_head_spec import UpdateHeadSpec

    labels = [c.strip() for c in classes.split(",") if c.strip()]
    raw: dict[str, Any] = {
        "kind": "update-head",
        "head": head,
        "reference_extractor": reference_extractor,
        "data": _data_spec(data, "--data"),
        "classes": labels,
        "test": _data_spec(test, "--test") if test else None,
        "test_limit": test_limit,
        "reference_bn": reference_bn,
        "settings": {"steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed, "threads": threads},
    }
    try:
        spec = UpdateHeadSpec.model_validate(raw)
    except ValidationError as exc:
        raise fail(f"update-head: {describe_validation_error(exc)}") from None
    if local:
        from partsbin.cli.training import _TrainingProgress, publishing_registry
        from partsbin.trainer.engine import Progress
        from partsbin.trainer.update_head import run_update_head

        with publishing_registry(url, token) as reg:
            reg.check_can_publish(spec.namespace, f"publishing the new version of {head}")
            with _TrainingProgress(f"update {head}") as shown:
                result = run_update_head(spec, reg, progress=Progress(on_step=shown.on_step))
        for line in result.lines:
            console.print(line)
        return
    with open_registry(url, token) as reg:
        job = reg.jobs.submit(spec.model_dump(mode="json"))
        if not wait:
            console.print(
                f"submitted job {job['id']} ({job['status']}); follow it with `partsbin jobs show {job['id']}`"
            )
            return
        console.print(f"submitted job {job['id']}; waiting for a worker (`partsbin worker`)")
        import time

        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(1.0)
            job = reg.jobs.get(job["id"])
    if job["status"] != "succeeded":
        last = (job.get("error") or "").strip().splitlines()[-1:] or [job["status"]]
        raise fail(f"update-head job {job['id']} {job['status']}: {last[0]}", code=1)
    for ref in job["result_refs"]:
        console.print(f"published {ref}")
