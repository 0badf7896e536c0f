"""Serving the local store: ``partsbin serve`` against nginx with sendfile, same run.

    python bench/serve_bench.py            # writes bench/results/serve.{json,md}
    (needs nginx: ``apt-get install nginx-light``)

A ~112 MB component is pushed to ``partsbin serve`` (embedded default: SQLite and the
local store). nginx serves the very same blob file from the store's folder (``sendfile
on``). Then, round by round and interleaved (these machines are shared and noisy), 1 and
8 concurrent ``curl`` processes download it from each server, to /dev/null; a batch is
timed from the first launch to the last exit, so the throughput is bytes delivered over
wall time. The servers:

- ``partsbin serve``, zero-copy (the default: registry/zerocopy.py);
- ``partsbin serve`` with ``PARTSBIN_ZERO_COPY=false`` (the way before: 4 MiB chunks read
  through worker threads);
- nginx with one worker process (the same process count as ``partsbin serve``);
- nginx with ``worker_processes auto`` (one per core), as it is usually run.

Target (issue 26.1): >= 95% of nginx for 1 and for 8 concurrent downloads; ratios are
taken per round against nginx in that round, and the median is reported.
"""

from __future__ import annotations

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
from _machine import machine_info
from registry_bench import Server, free_port
from transfer_bench import _component

from partsbin import Registry

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ROUNDS = 9
CONCURRENCY = (1, 8)

NGINX_CONF = """
{user}
daemon off;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {root}; }}
    }}
}}
"""


class Nginx:
    def __init__(self, prefix: Path, root: Path, workers: str) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise SystemExit("nginx is not installed: apt-get install nginx-light")
        prefix.mkdir(parents=True)
        self.port = free_port()
        conf = prefix / "nginx.conf"
        # Started as root, nginx's workers drop to "nobody", who cannot enter the
        # benchmark's private temporary folder.
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(user=user, workers=workers, prefix=prefix, port=self.port, root=root))
        self.proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-e", "stderr"])
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.head(self.base + "/blob")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def batch(url: str, n: int, size: int) -> float:
    """Seconds for ``n`` concurrent curl downloads of ``url`` (each checked for its size)."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["curl", "-s", "-f", "-o", "/dev/null", "-w", "%{size_download}", url],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    outs = [p.communicate()[0] for p in procs]
    seconds = time.perf_counter() - start
    bad = [o for p, o in zip(procs, outs, strict=True) if p.returncode or int(o or 0) != size]
    if bad:
        raise RuntimeError(f"a download of {url} failed or was short: {bad}")
    return seconds


def main() -> None:
    if not shutil.which("curl"):
        raise SystemExit("curl is not installed: apt-get install curl")
    work = Path(tempfile.mkdtemp(prefix="partsbin-serve-bench-"))
    zero = Server(work / "registry")
    servers: list[Server | Nginx] = [zero]
    try:
        path = _component(work / "big.safetensors", 112)
        size = path.stat().st_size
        with Registry(url=zero.url, token=zero.token, cache_dir=work / "push-cache") as reg:
            comp = reg.push(path)
        # The same store served without zero-copy, by a second process on the same files.
        copying = Server(work / "registry", PARTSBIN_ZERO_COPY="false")
        servers.append(copying)
        blob = next(p for p in (work / "registry").rglob("*") if p.is_file() and p.name.startswith(comp.hex))
        root = work / "nginx-root"
        root.mkdir()
        os.link(blob, root / "blob")
        nginx1 = Nginx(work / "nginx-1", root, "1")
        servers.append(nginx1)
        nginx_auto = Nginx(work / "nginx-auto", root, "auto")
        servers.append(nginx_auto)
        file = f"/components/by-digest/{comp.hex}/file"
        urls = {
            "partsbin serve, zero-copy (default)": zero.url + file,
            "partsbin serve, PARTSBIN_ZERO_COPY=false (before)": copying.url + file,
            "nginx, sendfile, 1 worker": nginx1.base + "/blob",
            "nginx, sendfile, worker_processes auto": nginx_auto.base + "/blob",
        }
        for url in urls.values():  # warm the page cache and each server
            batch(url, 1, size)
        times: dict[str, dict[int, list[float]]] = {name: {n: [] for n in CONCURRENCY} for name in urls}
        load = [os.getloadavg()[0]]
        for r in range(ROUNDS):
            order = list(urls) if r % 2 == 0 else list(reversed(urls))
            for n in CONCURRENCY:
                for name in order:
                    times[name][n].append(batch(urls[name], n, size))
            print(
                f"round {r + 1}/{ROUNDS}",
                {k: [f"{n * size / v[n][-1] / 1e6:.0f}" for n in CONCURRENCY] for k, v in times.items()},
                flush=True,
            )
        # What the asyncio event loop (which zero-copy needs: uvloop has no sendfile)
        # costs the rest of the API: a metadata read, on each partsbin server, interleaved.
        api: dict[str, list[float]] = {"zero-copy (asyncio loop)": [], "before (uvloop)": []}
        meta = f"/components/{comp.name}/versions/{comp.version}"
        with httpx.Client(base_url=zero.url) as z, httpx.Client(base_url=copying.url) as c:
            for block in range(20):
                pairs = [("zero-copy (asyncio loop)", z), ("before (uvloop)", c)]
                for label, http in pairs if block % 2 == 0 else reversed(pairs):
                    for _ in range(25):
                        t = time.perf_counter()
                        http.get(meta).raise_for_status()
                        api[label].append(time.perf_counter() - t)
        load.append(os.getloadavg()[0])
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    def mbps(name: str, n: int, i: int) -> float:
        return n * size / times[name][n][i] / 1e6

    median = {
        name: {n: statistics.median(mbps(name, n, i) for i in range(ROUNDS)) for n in CONCURRENCY} for name in urls
    }
    baselines = ("nginx, sendfile, 1 worker", "nginx, sendfile, worker_processes auto")
    ratios = {
        name: {
            base: {
                n: statistics.median(mbps(name, n, i) / mbps(base, n, i) for i in range(ROUNDS)) for n in CONCURRENCY
            }
            for base in baselines
        }
        for name in urls
    }
    api_ms = {
        label: {
            "p50_ms": statistics.median(v) * 1000,
            "p99_ms": statistics.quantiles(v, n=100)[98] * 1000,
        }
        for label, v in api.items()
    }
    out = {
        "machine": machine_info(),
        "metadata_read": api_ms,
        "size_bytes": size,
        "rounds": ROUNDS,
        "load_average": load,
        "median_MBps": median,
        "median_ratio_to": ratios,
        "seconds": times,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(out, indent=2) + "\n")
    m = out["machine"]
    rows = "\n".join(
        f"| {name} | "
        + " | ".join(
            f"{median[name][n]:.0f} MB/s ({ratios[name][baselines[0]][n]:.0%}, {ratios[name][baselines[1]][n]:.0%})"
            for n in CONCURRENCY
        )
        + " |"
        for name in urls
    )
    api_rows = "\n".join(f"| {k} | {v['p50_ms']:.2f} ms | {v['p99_ms']:.2f} ms |" for k, v in api_ms.items())
    md = f"""# Serving the local store: partsbin serve against nginx

`python bench/serve_bench.py` on {m["cpus"]} CPU cores ({m["cpu_model"]}), Python {m["python"]}: a
{size / 1e6:.0f} MB component of `partsbin serve` (SQLite, local store), and the same blob file served by nginx
(sendfile on), downloaded by `curl` to /dev/null over loopback; {ROUNDS} rounds, the servers interleaved (order
reversed every other round). Aggregate throughput of the batch (bytes over the wall time from the first launch
to the last exit), median of the rounds; in brackets the median per-round ratio to nginx with 1 worker and to
nginx with one worker per core. 1-minute load average {load[0]:.1f} → {load[1]:.1f}.

| server | 1 download | 8 concurrent downloads |
|---|---|---|
{rows}

Target (issue 26.1): ≥ 95% of nginx for 1 and for 8 concurrent downloads.

Zero-copy needs asyncio's event loop (uvloop's `loop.sendfile` is not implemented), so a
server that sends files zero-copy answers everything else on asyncio too. What that costs
a metadata read (`GET /components/{{name}}/versions/{{v}}`, 500 requests per server, interleaved in blocks of 25):

| server | p50 | p99 |
|---|---|---|
{api_rows}
"""
    (RESULTS / "serve.md").write_text(md)
    print(md)


if __name__ == "__main__":
    sys.exit(main())
