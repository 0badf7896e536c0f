"""One CLI verb per job kind, made from the kind's registration, and the one path every
job takes from the command line (:func:`run_or_submit`).

A verb's options are the kind's (:class:`partsbin.parts.jobs.Option`: each sets a spec
field) plus the same few for every kind: ``--name``, ``--namespace``, ``--spec FILE`` (the
spec's other fields, as YAML or JSON; the options override it), ``--local`` (run here),
``--wait/--no-wait`` and ``--json``. Submitted jobs are followed with a progress bar; every
verb ends by printing the kind's result summary.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from partsbin.cli._app import PANEL_TRAINING, app, console, fail, note, open_registry

__all__ = ["run_or_submit", "parse_data_option", "register_verbs"]


def _read_mapping(text: str, option: str) -> dict[str, Any]:
    import yaml

    try:
        value = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise fail(f"{option}: cannot parse {text[:80]!r}: {exc}") from None
    if not isinstance(value, dict):
        raise fail(f"{option} takes a mapping (a JSON object)")
    return value


def parse_data_option(value: str, option: str = "--data") -> dict[str, Any]:
    """A data spec given as inline JSON, a YAML/JSON file, or a bare source name."""
    from partsbin.parts.data.spec import SOURCES

    if value.lstrip().startswith("{"):
        return _read_mapping(value, option)
    if value in SOURCES:
        return {"source": value}
    path = Path(value)
    if path.is_file():
        try:
            return _read_mapping(path.read_text(), option)
        except OSError as exc:
            raise fail(f"{option}: cannot read {value}: {exc}") from None
    raise fail(
        f"{option}: {value!r} is neither inline JSON (starting with '{{'), a file, nor a source ({', '.join(SOURCES)})"
    )


def _ints(value: str, option: str) -> list[int]:
    try:
        steps = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise fail(f"{option} takes counts separated by commas (0,50,100), got {value!r}") from None
    if not steps:
        raise fail(f"{option} takes counts separated by commas (0,50,100), got {value!r}")
    return steps


def _convert(parse: str | None, value: Any, option: str) -> Any:
    if parse == "data":
        return parse_data_option(value, option)
    if parse == "ints":
        return _ints(value, option)
    if parse == "list":
        return [v.strip() for v in value.split(",") if v.strip()]
    if parse == "ref-or-bool":
        return {"train": True, "true": True, "none": False, "false": False}.get(value.lower(), value)
    return value


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def _headline(spec: Any) -> str:
    return f"{spec.kind} job {spec.namespace}/{spec.name}"


def _print_result(result: Any, job_id: int | None, json_out: bool) -> None:
    if json_out:
        print(json.dumps({"job": job_id, "kind": result.kind, "result": result.model_dump(mode="json")}, indent=2))
        return
    for line in result.summary():
        console.print(line)


def run_or_submit(
    raw: dict[str, Any],
    *,
    local: bool,
    wait: bool = True,
    json_out: bool = False,
    url: str | None = None,
    token: str | None = None,
) -> None:
    """The one way a job goes from the command line: checked, then run here (``--local``,
    publishing to ``--url`` or the embedded registry) or submitted and followed."""
    from partsbin.client.errors import JobFailed
    from partsbin.parts.jobs import InvalidSpec, parse_job_spec

    try:
        spec = parse_job_spec(raw)
    except InvalidSpec as exc:
        raise fail(f"invalid {raw.get('kind', 'train')} job: {exc}") from None
    if local:
        from partsbin.cli.training import TrainingProgress, publishing_registry
        from partsbin.trainer.jobs import run_job
        from partsbin.trainer.loop import Progress

        with publishing_registry(url, token) as reg:
            if spec.publish:
                # Minutes of training must not end in "publishing needs a token".
                reg.check_can_publish(spec.namespace, f"publishing what the {_headline(spec)} makes")
            with TrainingProgress(_headline(spec)) as shown:
                result = run_job(spec, reg, progress=Progress(on_step=shown.on_step))
        _print_result(result, None, json_out)
        return
    with open_registry(url, token) as reg:
        job = reg.submit(spec)
        if not wait:
            if json_out:
                print(json.dumps(job.raw, indent=2, default=str))
            else:
                note(f"submitted {_headline(spec)} as job {job.id}; follow it with `partsbin jobs show {job.id}`")
            return
        from partsbin.cli.training import TrainingProgress

        note(f"submitted {_headline(spec)} as job {job.id}; waiting for a worker (`partsbin worker`)")
        try:
            with TrainingProgress(_headline(spec)) as shown:
                job.wait(on_progress=lambda j: shown.on_step(j.progress) if j.progress else None)
        except JobFailed as exc:
            raise fail(str(exc), code=1) from None
        result = job.result
    _print_result(result, job.id, json_out)


def _verb(kind: Any) -> Any:
    """The typer command of ``kind``: its options as parameters, then the common ones."""
    params: list[inspect.Parameter] = []
    for i, opt in enumerate(kind.options):
        if opt.type is bool:
            annotation: Any = Annotated[bool, typer.Option(*opt.flags, help=opt.help)]
            default: Any = False
        else:
            annotation = Annotated[opt.type | None, typer.Option(*opt.flags, help=opt.help, metavar=opt.metavar)]
            default = inspect.Parameter.empty if opt.required else None
            if opt.required:
                annotation = Annotated[opt.type, typer.Option(*opt.flags, help=opt.help, metavar=opt.metavar)]
        params.append(
            inspect.Parameter(f"opt_{i}", inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    common: list[tuple[str, Any, Any]] = [
        ("name", Annotated[str | None, typer.Option("--name", help="job name, or NAMESPACE/NAME")], None),
        ("namespace", Annotated[str | None, typer.Option("--namespace", help="namespace it publishes into")], None),
        (
            "spec_file",
            Annotated[
                Path | None,
                typer.Option("--spec", metavar="FILE", help="the spec's other fields (YAML or JSON); options override"),
            ],
            None,
        ),
        ("local", Annotated[bool, typer.Option("--local", help="run here instead of submitting a job")], False),
        ("wait", Annotated[bool, typer.Option(help="wait for the job and print its result")], True),
        ("json_out", Annotated[bool, typer.Option("--json", help="print JSON for scripts")], False),
        ("url", Annotated[str | None, typer.Option("--url", help="registry URL [env: PARTSBIN_URL]")], None),
        ("token", Annotated[str | None, typer.Option("--token", help="API token [env: PARTSBIN_TOKEN]")], None),
    ]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, a, d in common]

    def command(**given: Any) -> None:
        raw: dict[str, Any] = {}
        if given["spec_file"] is not None:
            try:
                raw = _read_mapping(given["spec_file"].read_text(), "--spec")
            except OSError as exc:
                raise fail(f"--spec: cannot read {given['spec_file']}: {exc}") from None
        raw["kind"] = kind.name
        for i, opt in enumerate(kind.options):
            value = given[f"opt_{i}"]
            if value is None or (opt.type is bool and not value):
                continue
            _set(raw, opt.field, opt.value if opt.type is bool else _convert(opt.parse, value, opt.flags[0]))
        name, namespace = given["name"], given["namespace"]
        if name is not None and "/" in name:
            namespace, name = name.split("/", 1)
        if name is not None:
            raw["name"] = name
        if namespace is not None:
            raw["namespace"] = namespace
        run_or_submit(
            raw,
            local=given["local"],
            wait=given["wait"],
            json_out=given["json_out"],
            url=given["url"],
            token=given["token"],
        )

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = kind.summary[0].upper() + kind.summary[1:] + "."
    command.__name__ = kind.verb.replace("-", "_")
    return command


def register_verbs() -> None:
    from partsbin.parts.jobs import job_kinds

    for kind in job_kinds().values():
        if kind.verb is not None:
            app.command(kind.verb, rich_help_panel=PANEL_TRAINING)(_verb(kind))


register_verbs()
