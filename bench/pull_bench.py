"""``Registry.pull`` of a large file: in ranges over several connections, against one stream.

    python bench/pull_bench.py            # writes bench/results/pull.{json,md}

A ~112 MB component is pushed to ``partsbin serve`` (embedded default: SQLite and the
local store); then, round by round and interleaved (these machines are shared and
noisy), each way of getting it is timed from the start of the request to a verified file:

- sha256 of the file's bytes in memory, on one core: the bound for a verified download;
- the bare baseline: one httpx stream of ``GET .../file`` into a sha256, nothing written;
- ``Registry.pull`` as before this change (one stream; the ranged path switched off);
- ``Registry.pull`` in ranges (client/ranged.py): 1, 2 and 4 connections, pieces of 16 and 8 MiB.

Every pull starts from an empty cache. Targets (issue 26): the ranged pull at >= 60% of
one core's sha256 and >= 2x the bare single stream.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _machine import machine_info
from registry_bench import Server
from transfer_bench import _component

from partsbin import Registry
from partsbin.client import ranged

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ROUNDS = 7


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="partsbin-pull-bench-"))
    server = Server(work / "registry")
    try:
        path = _component(work / "big.safetensors", 112)
        data = path.read_bytes()
        size = len(data)
        with Registry(url=server.url, token=server.token, cache_dir=work / "push-cache") as reg:
            comp = reg.push(path)
        url = f"{server.url}/components/by-digest/{comp.hex}/file"

        def sha256() -> None:
            hashlib.sha256(data).hexdigest()

        def bare() -> None:
            h = hashlib.sha256()
            with httpx.Client() as http, http.stream("GET", url) as r:
                for chunk in r.iter_raw():
                    h.update(chunk)
            assert h.hexdigest() == comp.hex

        def pull(connections: int | None, piece: int = 16) -> None:
            cache = work / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            ranged.RANGED_THRESHOLD = 32 * 1024**2 if connections else size + 1
            ranged.CONNECTIONS = connections or 1
            ranged.PIECE = piece * 1024**2
            with Registry(url=server.url, cache_dir=cache) as reg:
                got = reg.pull(comp.ref)
            assert got.path.stat().st_size == size

        ways = {
            "sha256 on one core (in memory)": sha256,
            "bare httpx stream + sha256": bare,
            "Registry.pull, one stream (before)": lambda: pull(None),
            "Registry.pull, ranges of 16 MiB, 1 connection": lambda: pull(1),
            "Registry.pull, ranges of 16 MiB, 2 connections (the default here)": lambda: pull(2),
            "Registry.pull, ranges of 16 MiB, 4 connections": lambda: pull(4),
            "Registry.pull, ranges of 8 MiB, 2 connections": lambda: pull(2, 8),
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        load = [os.getloadavg()[0]]
        for r in range(ROUNDS):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for name in order:
                t = time.perf_counter()
                ways[name]()
                times[name].append(time.perf_counter() - t)
            print(
                f"round {r + 1}/{ROUNDS}", {k: f"{size / v[-1] / 1e6:.0f} MB/s" for k, v in times.items()}, flush=True
            )
        load.append(os.getloadavg()[0])
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    best = {name: size / min(t) / 1e6 for name, t in times.items()}
    median = {name: size / statistics.median(t) / 1e6 for name, t in times.items()}
    sha, bare_mbps = best["sha256 on one core (in memory)"], best["bare httpx stream + sha256"]
    out = {
        "machine": machine_info(),
        "size_bytes": size,
        "rounds": ROUNDS,
        "load_average": load,
        "best_MBps": best,
        "median_MBps": median,
        "seconds": times,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pull.json").write_text(json.dumps(out, indent=2) + "\n")
    m = out["machine"]
    rows = "\n".join(
        f"| {name} | {best[name]:.0f} MB/s | {median[name]:.0f} MB/s | {best[name] / sha:.0%} | {best[name] / bare_mbps:.2f}× |"
        for name in times
    )
    md = f"""# Pull of a large file: ranges over several connections

`python bench/pull_bench.py` on {m["cpus"]} CPU cores ({m["cpu_model"]}), Python {m["python"]}: a
{size / 1e6:.0f} MB component from `partsbin serve` (SQLite, local store) on the same machine, over loopback;
{ROUNDS} rounds, the ways interleaved (order reversed every other round); every pull from an empty cache and
verified. 1-minute load average {load[0]:.1f} → {load[1]:.1f}. Ratios of the best round.

| way | best | median | of sha256 on one core | of the bare stream |
|---|---|---|---|---|
{rows}

Targets: the ranged pull at ≥ 60% of one core's sha256 and ≥ 2× the bare single stream.
"""
    (RESULTS / "pull.md").write_text(md)
    print(md)


if __name__ == "__main__":
    sys.exit(main())
