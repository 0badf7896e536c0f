"""A 16×16 recombination matrix measured by one worker, by two, and locally.

    python bench/distributed_bench.py        # writes bench/results/distributed.{json,md}

The registry runs as its own process (`partsbin serve`, embedded default) and so does
every worker (`partsbin worker --threads 1`): a worker stands for a machine (here, a
core). `partsbin bench --distributed` splits the matrix into `evaluate` jobs (one
extractor × 8 heads each, so an extractor's features are computed once per job) and
waits for them. Baselines in the same run: the local benchmark with one thread and with
as many threads as there are cores. Components: 16 ResNet-14 networks (untrained: the
time does not depend on the weights) whose cards name the first 1,000 images of the
Fashion-MNIST test split as their test data.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _machine import machine_info

from partsbin import Registry
from partsbin.parts.archs import build
from partsbin.parts.cpus import available_cpus
from partsbin.parts.data.sources import FASHION_MNIST_CLASSES
from partsbin.parts.describe import card_for

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
N = 16
CFG = {"depth": 14, "width": 16, "in_chans": 1, "num_classes": 10}
TEST = {"source": "fashion-mnist", "limit": 1000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _publish(reg: Registry) -> tuple[list[str], list[str]]:
    exts, heads = [], []
    provenance = {"dataset": {"name": "fashion-mnist", "task": "all", "test": TEST}}
    for i in range(N):
        net = build("resnet_cifar", **CFG)
        exts.append(
            reg.push(
                net.extractor(),
                card_for(
                    name=f"bench/e{i}",
                    role="extractor",
                    arch="resnet_cifar",
                    config=CFG,
                    split="stage2",
                    input_size=28,
                    provenance=provenance,
                ),
            ).ref
        )
        heads.append(
            reg.push(
                net.head(),
                card_for(
                    name=f"bench/h{i}",
                    role="head",
                    arch="resnet_cifar",
                    config=CFG,
                    split="stage2",
                    labels=FASHION_MNIST_CLASSES,
                ),
            ).ref
        )
    return exts, heads


def _distributed(env: dict[str, str], exts: list[str], heads: list[str], workers: int) -> float:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "partsbin", "worker", "--threads", "1", "--poll", "0.2", "--name", f"w{i}"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for i in range(workers)
    ]
    try:
        with Registry(url=env["PARTSBIN_URL"], token=env["PARTSBIN_TOKEN"]) as reg:
            start = time.perf_counter()
            reg.bench(exts, heads, distributed=True, heads_per_job=8, poll_seconds=0.2)
            return time.perf_counter() - start
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)


def _local(env: dict[str, str], exts: list[str], heads: list[str], threads: int) -> float:
    with Registry(url=env["PARTSBIN_URL"], token=env["PARTSBIN_TOKEN"]) as reg:
        start = time.perf_counter()
        reg.bench(exts, heads, threads=threads)
        return time.perf_counter() - start


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="partsbin-distributed-"))
    port = _free_port()
    env = {
        **os.environ,
        "PARTSBIN_DATA_DIR": str(work / "data"),
        "PARTSBIN_CACHE_DIR": str(work / "cache"),
        "PARTSBIN_CONFIG_DIR": str(work / "config"),
        "PARTSBIN_URL": f"http://127.0.0.1:{port}",
        "PARTSBIN_NO_PROGRESS": "1",
    }
    os.environ.update({k: env[k] for k in ("PARTSBIN_CACHE_DIR", "PARTSBIN_CONFIG_DIR", "PARTSBIN_NO_PROGRESS")})
    server = subprocess.Popen(
        [sys.executable, "-m", "partsbin", "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    rows: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{env['PARTSBIN_URL']}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the registry did not start")
            time.sleep(0.2)
        made = subprocess.run(
            [sys.executable, "-m", "partsbin", "token", "create", "--scope", "admin"],
            env=env,
            capture_output=True,
            text=True,
        )
        env["PARTSBIN_TOKEN"] = made.stdout.strip().splitlines()[-1]
        with Registry(url=env["PARTSBIN_URL"], token=env["PARTSBIN_TOKEN"]) as reg:
            exts, heads = _publish(reg)
            reg.bench(exts[:1], heads[:1], post=False)  # warm the file cache and the data set
        cores = available_cpus()
        # Interleaved, best of two rounds each: the machine is shared.
        for _ in range(2):
            for label, fn in (
                ("local, 1 thread", lambda: _local(env, exts, heads, 1)),
                (f"local, {cores} threads", lambda: _local(env, exts, heads, cores)),
                ("distributed, 1 worker", lambda: _distributed(env, exts, heads, 1)),
                ("distributed, 2 workers", lambda: _distributed(env, exts, heads, 2)),
            ):
                seconds = fn()
                rows[label] = min(rows.get(label, seconds), seconds)
                print(f"{label}: {seconds:.1f} s", flush=True)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    speedup = rows["distributed, 1 worker"] / rows["distributed, 2 workers"]
    out = {"machine": machine_info(), "matrix": f"{N}x{N}", "seconds": rows, "two_workers_speedup": speedup}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed.json").write_text(json.dumps(out, indent=2) + "\n")
    m = out["machine"]
    lines = [
        "# A recombination matrix across workers",
        "",
        f"`python bench/distributed_bench.py` on {m['cpus']} CPU cores ({m['cpu_model']}), Python {m['python']}: "
        f"a {N}×{N} matrix (ResNet-14 parts, 1,000 Fashion-MNIST test images per extractor), best of two "
        "interleaved rounds. Each worker is its own `partsbin worker --threads 1` process; the distributed "
        "benchmark submits one `evaluate` job per extractor and 8 heads, and waits for them.",
        "",
        "| how | seconds |",
        "|---|---|",
        *[f"| {label} | {seconds:.1f} |" for label, seconds in rows.items()],
        "",
        f"Two workers finish the matrix in 1/{speedup:.2f} of the time one worker takes.",
    ]
    (RESULTS / "distributed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
