"""The scale mode of the registry benchmark: lookups with a million components.

    python bench/registry_bench.py --scale     # writes bench/results/registry_scale.{json,md}
    python bench/registry_bench.py --scale --bridges 10000   # and times /paths among 10,000 bridges

Bulk-loads GROUPS groups of MEMBERS components each (an RP aux head anchoring half
extractors, half task heads), plus the groups' anchors, through the registry's own
schema: every row is made by the functions the registry inserts with
(``component_values``, ``membership_values``) and written with PostgreSQL's COPY (SQLite:
executemany), then ``ANALYZE``d as a bulk load should be. A registry process then serves
them, and each route is timed over REQUESTS requests (p50, p99), with the database size.
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from partsbin.parts.describe import card_for
from partsbin.registry.crud.components import component_values, membership_values
from partsbin.registry.db.migrate import upgrade
from partsbin.registry.db.models import Base
from partsbin.registry.db.session import make_engine

CFG = {"depth": 8, "width": 4, "in_chans": 1, "num_classes": 3}
REQUESTS = 1000


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _rows(groups: int, members: int) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]], str | None]]:
    """(table, component row, membership rows, group anchor digest or None) in id order."""
    aux = card_for(
        name="g0/rp",
        role="aux-rp",
        arch="resnet_cifar",
        config={**CFG, "num_classes": 4},
        split="stage2",
        labels=["0", "90", "180", "270"],
    )
    for g in range(groups):
        anchor = _digest(f"aux{g}")
        yield "aux", _values(aux, f"g{g}/rp", anchor), membership_values(aux, anchor), anchor
        anchors = [f"sha256:{anchor}"]
        ext = card_for(
            name="g0/ext",
            role="extractor",
            arch="resnet_cifar",
            config=CFG,
            split="stage2",
            input_size=16,
            compat={"anchors": anchors},
            provenance={"dataset": {"name": f"data{g % 50}"}},
        )
        head = card_for(
            name="g0/head",
            role="head",
            arch="resnet_cifar",
            config=CFG,
            split="stage2",
            labels=["a", "b", "c"],
            compat={"anchors": anchors},
        )
        for m in range(members):
            card, kind = (ext, "ext") if m % 2 == 0 else (head, "head")
            digest = _digest(f"{g}/{m}")
            yield kind, _values(card, f"g{g}/{kind}{m}", digest), membership_values(card, digest), None


def _values(card: Any, name: str, digest: str) -> dict[str, Any]:
    values = component_values(
        card.model_copy(update={"name": name}), digest=digest, size=1, version=1, published_by=None
    )
    values["card"]["name"] = name
    return values


def _bridge_rows(
    groups: int, members: int, bridges: int
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], tuple[str, str, int] | None]]:
    """``bridges`` adapters between random groups: (component row, its two lineage edges,
    (extractor ref, head ref, bridges on the path) for a pair it connects, or None).

    A third lead into a head, a third into another group's anchor (every head of it), a
    third into another extractor's space; those chain, so that /paths walks two hops. Rows
    are made as the registry makes them (``component_values``; the lineage edges the
    publish path records for ``bridge.from`` / ``bridge.to``)."""
    rng = random.Random(1)
    # Extractors are the even members of each group, heads the odd ones (see _rows).
    ext_m = [m for m in range(members) if m % 2 == 0]
    head_m = [m for m in range(members) if m % 2 == 1]
    for b in range(bridges):
        g_from, g_to = rng.randrange(groups), rng.randrange(groups)
        m_from = rng.choice(ext_m)
        source = _digest(f"{g_from}/{m_from}")
        kind = b % 3
        if kind == 0:
            m_to = rng.choice(head_m)
            to, pair = _digest(f"{g_to}/{m_to}"), (f"g{g_from}/ext{m_from}@1", f"g{g_to}/head{m_to}@1", 1)
        elif kind == 1:
            to, pair = _digest(f"aux{g_to}"), (f"g{g_from}/ext{m_from}@1", f"g{g_to}/head{rng.choice(head_m)}@1", 1)
        else:
            m_to = rng.choice(ext_m)
            to, pair = _digest(f"{g_to}/{m_to}"), None  # into another space: /paths walks on
        card = card_for(
            name="b0/adapter",
            role="adapter",
            arch="stitch",
            config={"in_chans": 8, "out_chans": 8},
            split="adapter",
            input_size=8,
            bridge={"from": f"sha256:{source}", "to": f"sha256:{to}"},
        )
        digest = _digest(f"bridge{b}")
        values = _values(card, f"bridges/a{b}", digest)
        edges = [
            {"kind": "bridge_from", "target": f"sha256:{source}", "target_digest": source},
            {"kind": "bridge_to", "target": f"sha256:{to}", "target_digest": to},
        ]
        yield values, edges, pair


def populate(url: str, groups: int, members: int, bridges: int = 0) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    tables = Base.metadata.tables
    comp_cols = [c.name for c in tables["components"].columns]
    memb_cols = [c.name for c in tables["memberships"].columns]
    edge_cols = [c.name for c in tables["lineage_edges"].columns]
    group_cols = [c.name for c in tables["groups"].columns]
    now = time.strftime("%Y-%m-%d %H:%M:%S+00")
    heads, extractors, anchors = [], [], []
    started = time.perf_counter()
    postgres = engine.dialect.name == "postgresql"
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        comp_rows, memb_rows, group_rows, edge_rows = [], [], [], []
        tables_rows = (
            ("components", comp_cols, comp_rows),
            ("memberships", memb_cols, memb_rows),
            ("groups", group_cols, group_rows),
            ("lineage_edges", edge_cols, edge_rows),
        )

        def flush() -> None:
            if postgres:
                for table, cols, rows in tables_rows:
                    with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                        for row in rows:
                            copy.write_row(row)
            else:
                for table, cols, rows in tables_rows:
                    if not rows:
                        continue
                    marks = ", ".join("?" for _ in cols)
                    cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)
            raw.commit()
            for _table, _cols, rows in tables_rows:
                rows.clear()

        for cid, (kind, values, memberships, anchor) in enumerate(_rows(groups, members), start=1):
            values = {**values, "id": cid, "created_at": now, "card": json.dumps(values["card"])}
            comp_rows.append(tuple(values.get(c) for c in comp_cols))
            for m in memberships:
                memb_rows.append(tuple({**m, "component_id": cid}.get(c) for c in memb_cols))
            if anchor is not None:
                group = {
                    "anchor_digest": anchor,
                    "anchor_id": cid,
                    "kind": "rp",
                    "junction_channels": values["junction_channels"],
                    "junction_layout": values["junction_layout"],
                    "created_at": now,
                }
                group_rows.append(tuple(group.get(c) for c in group_cols))
                anchors.append(anchor)
            ref = f"{values['namespace']}/{values['name']}@1"
            (heads if kind == "head" else extractors if kind == "ext" else []).append(ref)
            if len(comp_rows) >= 20_000:
                flush()
        flush()
        path_pairs: list[tuple[str, str, int]] = []
        edge_id = 0
        for values, edges, pair in _bridge_rows(groups, members, bridges):
            cid += 1
            values = {**values, "id": cid, "created_at": now, "card": json.dumps(values["card"])}
            comp_rows.append(tuple(values.get(c) for c in comp_cols))
            for e in edges:
                edge_id += 1
                edge_rows.append(tuple({**e, "id": edge_id, "component_id": cid}.get(c) for c in edge_cols))
            if pair is not None:
                path_pairs.append(pair)
            if len(comp_rows) >= 20_000:
                flush()
        flush()
        if postgres:
            cur.execute("SELECT setval(pg_get_serial_sequence('components', 'id'), (SELECT max(id) FROM components))")
            if edge_id:
                cur.execute(
                    "SELECT setval(pg_get_serial_sequence('lineage_edges', 'id'), (SELECT max(id) FROM lineage_edges))"
                )
            raw.commit()
    finally:
        raw.close()
    loaded = time.perf_counter() - started
    # What a bulk load is followed by (PostgreSQL's docs, "Populating a Database"; SQLite's ANALYZE).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE" if postgres else "ANALYZE"))
        if postgres:
            size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
        else:
            size = Path(str(engine.url.database)).stat().st_size
    engine.dispose()
    return {
        "heads": heads,
        "extractors": extractors,
        "anchors": anchors,
        "path_pairs": path_pairs,
        "bridges": bridges,
        "load_s": loaded,
        "db_bytes": size,
    }


def _time(http: httpx.Client, requests: list[tuple[str, dict[str, Any]]]) -> dict[str, float]:
    for path, params in requests[:50]:  # warm-up
        http.get(path, params=params).raise_for_status()
    gc.collect()
    gc.freeze()  # the harness's own collections are not the server's latency
    lat = []
    for path, params in requests:
        t = time.perf_counter()
        r = http.get(path, params=params)
        lat.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    gc.unfreeze()
    lat.sort()
    return {"p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99)], "mean_ms": statistics.mean(lat)}


def measure(
    server_url: str, loaded: dict[str, Any], extra: dict[str, list[tuple[str, dict[str, Any]]]] | None = None
) -> dict[str, Any]:
    rng = random.Random(0)
    heads, exts, anchors = loaded["heads"], loaded["extractors"], loaded["anchors"]
    routes = {
        "GET /compatible?head=…&limit=20": [
            ("/compatible", {"head": rng.choice(heads), "limit": 20}) for _ in range(REQUESTS)
        ],
        "GET /compatible?extractor=…&limit=20": [
            ("/compatible", {"extractor": rng.choice(exts), "limit": 20}) for _ in range(REQUESTS)
        ],
        "GET /components?role=head&namespace=…": [
            ("/components", {"role": "head", "namespace": f"g{rng.randrange(len(anchors))}", "limit": 50})
            for _ in range(REQUESTS)
        ],
        "GET /components?group=…&role=extractor": [
            ("/components", {"group": rng.choice(anchors), "role": "extractor", "limit": 50}) for _ in range(REQUESTS)
        ],
        "GET /components?dataset=…&limit=50": [
            ("/components", {"dataset": f"data{rng.randrange(50)}", "limit": 50}) for _ in range(REQUESTS)
        ],
        "GET /groups/{digest}": [(f"/groups/{rng.choice(anchors)}", {"limit": 50}) for _ in range(REQUESTS)],
    }
    pairs = loaded.get("path_pairs") or []
    if pairs:
        # Pairs a bridge connects (one hop, and through a group), and random pairs (mostly
        # no path: the search walks its full depth before answering "none").
        routes["GET /paths?extractor=…&head=… (bridged pairs)"] = [
            ("/paths", {"extractor": e, "head": h}) for e, h, _n in (rng.choice(pairs) for _ in range(REQUESTS))
        ]
        routes["GET /paths?extractor=…&head=… (random pairs)"] = [
            ("/paths", {"extractor": rng.choice(exts), "head": rng.choice(heads)}) for _ in range(REQUESTS)
        ]
    routes.update(extra or {})
    out = {}
    with httpx.Client(base_url=server_url, timeout=60) as http:
        for label, requests in routes.items():
            out[label] = _time(http, requests)
            print(label, json.dumps(out[label]), flush=True)
    return out


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Registry lookups at scale",
        "",
        f"`python bench/registry_bench.py --scale` on {m['cpus']} CPU cores ({m['cpu_model']}), Python {m['python']}. "
        "Components bulk-loaded through the registry's own row functions (PostgreSQL: COPY), then ANALYZEd; "
        f"{REQUESTS} requests per route to a `partsbin serve` process, one client, sequential.",
        "",
    ]
    for backend in ("postgres", "sqlite"):
        r = result.get(backend)
        if not r:
            continue
        lines += [
            f"## {r['label']}: {r['components']:,} components in {r['groups']:,} groups"
            + (f", {r['bridges']:,} bridges" if r.get("bridges") else ""),
            "",
            f"Loaded in {r['load_s']:.0f} s; database {r['db_bytes'] / 1e9:.2f} GB.",
            "",
            "| route | p50 | p99 | target |",
            "|---|---|---|---|",
            *[
                f"| `{label}` | {t['p50_ms']:.1f} ms | {t['p99_ms']:.1f} ms | {'p99 ≤ 15 ms' if backend == 'postgres' else ''} |"
                for label, t in r["routes"].items()
            ],
            "",
        ]
    return "\n".join(lines)


def env_for(database_url: str | None) -> dict[str, str]:
    return {"PARTSBIN_DATABASE_URL": database_url} if database_url else {}
