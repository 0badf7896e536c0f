"""The ``partsbin`` command line.

Registry-side commands (``serve``, ``db``, ``token``) import the registry lazily, so the
client works where only the client's needs are met.
"""

from __future__ import annotations

import json
import shutil
import sys
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import PartsbinError

app = typer.Typer(help="partsbin: a registry of neural-network components that are compatible by training.", no_args_is_help=True)
db_app = typer.Typer(help="Registry database schema.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (works on the registry database directly).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")

console = Console()
err = Console(stderr=True)

UrlOpt = Annotated[Optional[str], typer.Option("--url", help="registry URL [env: PARTSBIN_URL]")]
TokenOpt = Annotated[Optional[str], typer.Option("--token", help="API token [env: PARTSBIN_TOKEN]")]


def _registry(url: str | None, token: str | None):  # type: ignore[no-untyped-def]
    from .registry import Registry

    return Registry(url=url, token=token, progress=sys.stderr.isatty())


def _settings():  # type: ignore[no-untyped-def]
    from registry.config import Settings

    return Settings()


# -- server side -------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="bind address [env: PARTSBIN_HOST]")] = None,
    port: Annotated[Optional[int], typer.Option(help="port [env: PARTSBIN_PORT]")] = None,
) -> None:
    """Serve the registry (embedded default: SQLite and a local folder under PARTSBIN_DATA_DIR)."""
    from registry.server import SchemaBehind, serve as run

    try:
        run(_settings(), host=host, port=port)
    except SchemaBehind as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply the schema migrations to PARTSBIN_DATABASE_URL."""
    from registry.db.migrate import current_revision, upgrade
    from registry.db.session import make_engine

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine, revision)
    console.print(f"database at revision {current_revision(engine)}")
    engine.dispose()


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and whether it is at head."""
    from registry.db.migrate import current_revision, head_revision
    from registry.db.session import make_engine

    engine = make_engine(_settings().resolved_database_url)
    cur, head = current_revision(engine), head_revision()
    console.print(f"current: {cur or '(empty)'}  head: {head}  {'up to date' if cur == head else 'run `partsbin db upgrade`'}")
    engine.dispose()


def _session():  # type: ignore[no-untyped-def]
    from registry.db.migrate import SchemaState, schema_state
    from registry.db.session import make_engine, make_sessionmaker

    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    if schema_state(engine) is not SchemaState.AT_HEAD:
        err.print("[red]error:[/red] the registry database is not at the current schema: run `partsbin db upgrade` first")
        raise typer.Exit(2)
    return make_sessionmaker(engine)()


@token_app.command("create")
def token_create(
    scope: Annotated[str, typer.Option(help="read, publish or admin")],
    namespace: Annotated[Optional[list[str]], typer.Option("--namespace", "-n", help="namespace a publish token may publish into (repeatable)")] = None,
    owner: Annotated[bool, typer.Option(help="publish token that also moves aliases and yanks in its namespaces")] = False,
    name: Annotated[str, typer.Option(help="a label for the token")] = "",
    expires_days: Annotated[Optional[float], typer.Option(help="expire after this many days")] = None,
) -> None:
    """Create a token. The token alone is printed on the last line."""
    from registry.crud.tokens import create_token
    from registry.errors import APIError

    with _session() as session:
        try:
            row, secret = create_token(
                session=session, scope=scope, name=name, namespaces=namespace or [], owner=owner,
                expires_in=timedelta(days=expires_days) if expires_days else None,
            )  # fmt: skip
        except APIError as exc:
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(2) from None
        session.commit()
        err.print(f"created token {row.id} ({row.scope}{', namespaces ' + ','.join(row.namespaces) if row.namespaces else ''}); it is shown only now:")
    print(secret)


@token_app.command("list")
def token_list(all: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False) -> None:
    """List tokens (never their secrets)."""
    from registry.crud.tokens import list_tokens

    with _session() as session:
        table = Table("id", "prefix", "scope", "namespaces", "owner", "name", "expires", "revoked")
        for t in list_tokens(session, include_revoked=all):
            table.add_row(str(t.id), t.prefix + "…", t.scope, ",".join(t.namespaces or []), "yes" if t.owner else "", t.name, str(t.expires_at or ""), "yes" if t.revoked_at else "")
        console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token by id."""
    from registry.crud.tokens import revoke_token
    from registry.errors import APIError

    with _session() as session:
        try:
            revoke_token(session=session, token_id=token_id)
        except APIError as exc:
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(2) from None
        session.commit()
    console.print(f"revoked token {token_id}")


# -- client side -------------------------------------------------------------------------
@app.command()
def push(
    file: Annotated[Path, typer.Argument(help=".safetensors file (card embedded, or given with --card)")],
    card: Annotated[Optional[Path], typer.Option(help="card JSON file")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Publish a component file."""
    card_data = json.loads(card.read_text()) if card else None
    with _registry(url, token) as reg:
        comp = reg.push(file, card_data)
    console.print(f"published {comp.ref} ({comp.digest})")


@app.command()
def pull(
    ref: str,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="also copy the file here")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download a component into the cache (sha256 verified)."""
    with _registry(url, token) as reg:
        comp = reg.pull(ref)
    if output:
        shutil.copyfile(comp.path, output)  # type: ignore[arg-type]
    console.print(f"{comp.ref} {comp.digest} -> {output or comp.path}")


def _table(comps) -> Table:  # type: ignore[no-untyped-def]
    table = Table("ref", "role", "arch", "junction", "dataset", "digest", "size")
    for c in comps:
        j = c.card.interface.junction
        ds = c.card.provenance.dataset.name if c.card.provenance.dataset else ""
        table.add_row(c.ref + (" (yanked)" if c.yanked else ""), c.role, c.card.arch.name, f"{j.channels}@{j.spatial}", ds, c.digest[:19] + "…", f"{c.size:,}")
    return table


@app.command("ls")
def ls(
    role: Optional[str] = None,
    arch: Optional[str] = None,
    group: Optional[str] = None,
    dataset: Optional[str] = None,
    namespace: Optional[str] = None,
    prefix: Optional[str] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List components."""
    with _registry(url, token) as reg:
        comps = reg.list(role=role, arch=arch, group=group, dataset=dataset, namespace=namespace, prefix=prefix)
    console.print(_table(comps))


@app.command()
def show(ref: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show a component's card."""
    with _registry(url, token) as reg:
        comp = reg.info(ref)
    console.print_json(json.dumps(comp.raw))


@app.command()
def compatible(
    head: Annotated[Optional[str], typer.Option(help="find extractors for this head")] = None,
    extractor: Annotated[Optional[str], typer.Option(help="find heads for this extractor")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Components that recombine with a head or an extractor, with the reason."""
    with _registry(url, token) as reg:
        items = reg.compatible(head=head, extractor=extractor)
    table = Table("ref", "role", "status", "why")
    for it in items:
        why = "; ".join(f"{r['detail']} ({r.get('anchor_ref') or r.get('anchor')})" for r in it["reasons"])
        table.add_row(it["component"].ref, it["role"], it["status"], why)
    console.print(table)


@app.command()
def alias(
    name: Annotated[str, typer.Argument(help="ns/name")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS")],
    version: Annotated[Optional[int], typer.Argument(help="version to point at")] = None,
    delete: Annotated[bool, typer.Option(help="remove the alias")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Point an alias (e.g. stable) at a version, or remove it (admin or namespace owner)."""
    with _registry(url, token) as reg:
        if delete:
            reg.delete_alias(name, alias_name)
            console.print(f"removed {name}:{alias_name}")
            return
        if version is None:
            err.print("[red]error:[/red] give the VERSION to point at, or --delete")
            raise typer.Exit(2)
        reg.set_alias(name, alias_name, version)
    console.print(f"{name}:{alias_name} -> {name}@{version}")


@app.command()
def yank(
    ref: Annotated[str, typer.Argument(help="ns/name@VERSION")],
    reason: Annotated[str, typer.Option(help="why (shown to users)")] = "",
    undo: Annotated[bool, typer.Option(help="undo a yank")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Hide a version from lists and lookups (still downloadable by exact version)."""
    with _registry(url, token) as reg:
        if undo:
            comp = reg.unyank(ref)
            console.print(f"unyanked {comp.ref}")
            return
        if not reason:
            err.print("[red]error:[/red] --reason is required")
            raise typer.Exit(2)
        comp = reg.yank(ref, reason)
    console.print(f"yanked {comp.ref}: {reason}")


# -- training ---------------------------------------------------------------------------
jobs_app = typer.Typer(help="Training jobs in the registry's queue.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


def _load_spec(path: Path):  # type: ignore[no-untyped-def]
    import yaml
    from pydantic import ValidationError

    from parts.training_spec import TrainSpec

    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (OSError, yaml.YAMLError) as exc:
        err.print(f"[red]error:[/red] cannot read {path}: {exc}")
        raise typer.Exit(2) from None
    try:
        return TrainSpec.model_validate(data)
    except ValidationError as exc:
        from parts.messages import describe_validation_error

        err.print(f"[red]error:[/red] invalid spec {path}: {describe_validation_error(exc)}")
        raise typer.Exit(2) from None


@contextmanager
def _publishing_registry():  # type: ignore[no-untyped-def]
    """PARTSBIN_URL when set, else the embedded registry in the data folder."""
    import os

    from .registry import Registry

    if os.environ.get("PARTSBIN_URL"):
        with Registry(progress=sys.stderr.isatty()) as reg:
            yield reg
        return
    from registry.embedded import embedded_registry

    with embedded_registry() as emb, Registry(url=emb.url, token=emb.token) as reg:
        err.print(f"publishing to the embedded registry in {emb.settings.data_dir.resolve()}")
        yield reg


def _progress_bar():  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
                    TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[ips]:.0f} img/s"), TimeElapsedColumn(),
                    console=err, transient=True)  # fmt: skip


@app.command()
def train(
    spec_file: Annotated[Optional[Path], typer.Argument(metavar="SPEC", help="training spec, YAML or JSON")] = None,
    local: Annotated[bool, typer.Option("--local", help="train in this process instead of submitting a job")] = False,
    schema: Annotated[bool, typer.Option("--schema", help="print the spec's JSON Schema and exit")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Train compatible components: submit SPEC as a job, or run it here with --local."""
    from parts.training_spec import TrainSpec

    if schema:
        print(json.dumps(TrainSpec.model_json_schema(), indent=2))
        return
    if spec_file is None:
        err.print("[red]error:[/red] give a SPEC file (or --schema)")
        raise typer.Exit(2)
    spec = _load_spec(spec_file)
    if not local:
        with _registry(url, token) as reg:
            job = reg.jobs.submit(spec.model_dump(mode="json"))
        console.print(f"submitted job {job['id']} ({job['status']}); follow it with `partsbin jobs show {job['id']}`")
        return
    from trainer.engine import Progress
    from trainer.run import run

    with _publishing_registry() as reg, _progress_bar() as bar:
        task = bar.add_task(spec.name, total=None, loss=float("nan"), ips=0.0)

        def on_step(info: dict) -> None:  # type: ignore[type-arg]
            bar.update(task, completed=info["step"], total=info["total"], loss=info["loss"], ips=info["images_per_s"])

        result = run(spec, reg if spec.publish else None, progress=Progress(on_step=on_step))
    for name, m in result.metrics.items():
        if name != "train":
            console.print(f"task {name}: own-task accuracy {m['own_task_accuracy']:.1%} on {m['n']} test images")
    console.print(f"{result.metrics['train']['images_per_s']:.0f} images/s over {result.metrics['train']['seconds']:.0f} s")
    for ref in result.refs:
        console.print(f"published {ref}")


@app.command()
def worker(
    name: Annotated[Optional[str], typer.Option(help="worker name (default: host-random)")] = None,
    lease: Annotated[float, typer.Option(help="lease length in seconds")] = 60.0,
    poll: Annotated[float, typer.Option(help="seconds between claims when the queue is empty")] = 2.0,
    once: Annotated[bool, typer.Option(help="exit when the queue is empty")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Take training jobs from the registry until stopped (SIGTERM releases the job in hand)."""
    import logging
    import signal

    from trainer.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with _registry(url, token) as reg:
        w = Worker(reg, name=name, lease_seconds=lease, poll_seconds=poll)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: w.stop.set())
        w.run(exit_when_idle=once)


@jobs_app.command("list")
def jobs_list(status: Optional[str] = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List jobs."""
    with _registry(url, token) as reg:
        jobs = reg.jobs.list(status=status)
    table = Table("id", "status", "namespace", "name", "attempts", "worker", "progress", "error")
    for j in jobs:
        p = j.get("progress") or {}
        prog = f"{p.get('step')}/{p.get('total')} loss {p.get('loss', float('nan')):.3f}" if p else ""
        table.add_row(str(j["id"]), j["status"], j["namespace"], j["spec"].get("name", ""), f"{j['attempts']}/{j['max_attempts']}", j.get("worker") or "", prog, (j.get("error") or "").strip().splitlines()[-1:][0] if j.get("error") else "")
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show a job."""
    with _registry(url, token) as reg:
        console.print_json(json.dumps(reg.jobs.get(job_id)))


@jobs_app.command("cancel")
def jobs_cancel(job_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a job (a running one stops at its next step)."""
    with _registry(url, token) as reg:
        job = reg.jobs.cancel(job_id)
    console.print(f"job {job_id}: {job['status']}{' (cancel requested)' if job['cancel_requested'] else ''}")


@app.command("bench")
def bench_cmd(
    extractor: Annotated[list[str], typer.Option("--extractor", "-e", help="extractor ref (repeatable)")],
    head: Annotated[list[str], typer.Option("--head", "-h", help="head ref (repeatable)")],
    bn: Annotated[str, typer.Option(help="batch, running or recalibrate")] = "batch",
    batch_size: int = 256,
    correlation: Annotated[bool, typer.Option(help="feature cross-correlation between the extractors")] = False,
    latency: Annotated[bool, typer.Option(help="latency and throughput of each assembled model")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the results as JSON")] = None,
    heatmap: Annotated[Optional[Path], typer.Option(help="write a PNG heatmap of the matrix")] = None,
    post: Annotated[bool, typer.Option(help="post the results to the registry as evaluations")] = True,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Recombination matrix of extractors × heads on each extractor's task test images."""
    if bn not in ("batch", "running", "recalibrate"):
        err.print("[red]error:[/red] --bn must be batch, running or recalibrate")
        raise typer.Exit(2)
    with _registry(url, token) as reg:
        result = reg.bench(extractor, head, bn_mode=bn, batch_size=batch_size, correlation=correlation, latency=latency, post=post)  # type: ignore[arg-type]
    console.print(result.table())
    for pair, c in result.correlation.items():
        console.print(f"feature correlation {pair}: {c['direct']:.3f} (best permutation {c['best_permutation']:.3f})")
    if latency:
        for c in result.cells:
            console.print(f"{c.extractor} + {c.head}: {c.latency_ms:.1f} ms per batch of {batch_size}, {c.images_per_s:.0f} images/s")
    if json_out:
        json_out.write_text(result.to_json())
    if heatmap:
        console.print(f"heatmap: {result.heatmap(heatmap)}")


@app.command()
def demo(
    steps: Annotated[int, typer.Option(help="training steps per network")] = 150,
    out: Annotated[Path, typer.Option(help="folder for the heatmaps")] = Path("partsbin-demo"),
) -> None:
    """Train two compatible networks on the digits pair, recombine them, and benchmark."""
    from trainer.demo import run_demo

    with _publishing_registry() as reg:
        result = run_demo(reg, steps=steps, out_dir=out, console=console)
    console.print(f"demo finished in {result.seconds:.0f} s")


def main() -> None:
    try:
        app()
    except PartsbinError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
