"""How long the CLI takes to start, against `python -c pass` in the same run.

    python bench/startup_bench.py            # writes bench/results/startup.{json,md}

`partsbin --help`, `ls`, `show`, `pull` (of a cached component) and `token list` are run
as a user runs them, and `partsbin serve` is timed to its first answer: a new process each time, against a registry (`partsbin serve` on
the embedded default) running beside it. Each command runs ROUNDS times, interleaved
with the baseline; the median wall time is reported. Target: well under a second.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ROUNDS = 9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr}")
    return elapsed


SERVE = "partsbin serve (to its first answer)"
SERVE_ROUNDS = 5


def _first_answer(cmd: list[str], env: dict[str, str]) -> float:
    url = f"http://127.0.0.1:{cmd[-1]}/healthz"
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(url).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.perf_counter() - start > 120:
                raise RuntimeError(f"{' '.join(cmd)} did not start")
            time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="partsbin-startup-"))
    port = _free_port()
    env = {
        **os.environ,
        "PARTSBIN_DATA_DIR": str(work / "data"),
        "PARTSBIN_CACHE_DIR": str(work / "cache"),
        "PARTSBIN_CONFIG_DIR": str(work / "config"),
        "PARTSBIN_URL": f"http://127.0.0.1:{port}",
        "PARTSBIN_NO_PROGRESS": "1",
    }
    # As users run them: with the bytecode cache (a sandbox's PYTHONDONTWRITEBYTECODE
    # would make every run compile every module again).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    partsbin = [sys.executable, "-m", "partsbin"]
    server = subprocess.Popen([*partsbin, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
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
            [*partsbin, "token", "create", "--scope", "publish", "-n", "bench"], env=env, capture_output=True, text=True
        )
        env["PARTSBIN_TOKEN"] = made.stdout.strip().splitlines()[-1]
        # One small component to look at and pull (pulled once, so later pulls are cache hits
        # that still resolve the latest version over HTTP).
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from partsbin import Registry; from partsbin.parts.archs import build; "
                "from partsbin.parts.describe import card_for\n"
                "net = build('resnet_cifar', depth=8, width=4, in_chans=1, num_classes=4)\n"
                "card = card_for(name='bench/rp', role='aux-rp', arch='resnet_cifar', "
                "config={'depth': 8, 'width': 4, 'in_chans': 1, 'num_classes': 4}, split='stage2', labels=list('abcd'))\n"
                "with Registry() as reg: reg.push(net.head(), card)",
            ],
            env=env,
            check=True,
        )
        subprocess.run([*partsbin, "pull", "bench/rp"], env=env, check=True, capture_output=True)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "partsbin --help": [*partsbin, "--help"],
            "partsbin ls": [*partsbin, "ls"],
            "partsbin show bench/rp": [*partsbin, "show", "bench/rp"],
            "partsbin pull bench/rp": [*partsbin, "pull", "bench/rp"],
            "partsbin token list": [*partsbin, "token", "list"],
        }
        for cmd in commands.values():  # once untimed: the bytecode cache is written
            _timed(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(ROUNDS):
            for name, cmd in commands.items():
                times[name].append(_timed(cmd, env))
        # A restart of the registry on the same database: from the process's start to its
        # first answer (what a deployment waits for), beside the baseline.
        times[SERVE] = [
            _first_answer([*partsbin, "serve", "--port", str(_free_port())], env) for _ in range(SERVE_ROUNDS)
        ]
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    base = statistics.median(times["python -c pass"])
    rows = {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t)} for name, t in times.items()}
    out = {"machine": machine_info(), "rounds": ROUNDS, "commands": rows, "baseline_median_s": base}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(out, indent=2) + "\n")
    m = out["machine"]
    lines = [
        "# CLI start-up",
        "",
        f"`python bench/startup_bench.py` on {m['cpus']} CPU cores ({m['cpu_model']}), Python {m['python']}: "
        f"each command as a new process, {ROUNDS} rounds interleaved with the baseline, median wall time. "
        "`ls`, `show` and `pull` ask a registry (`partsbin serve`, embedded default) running beside them; "
        "`pull` finds the file in the cache but resolves the latest version over HTTP. "
        f"`partsbin serve`: {SERVE_ROUNDS} restarts on the same database, from the process's start to its first "
        "answer to `/healthz` (PyTorch loads after that, in the background).",
        "",
        "| command | median | min | max | over `python -c pass` |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| `{name}` | {r['median_s'] * 1000:.0f} ms | {r['min_s'] * 1000:.0f} ms | {r['max_s'] * 1000:.0f} ms "
            f"| {(r['median_s'] - base) * 1000:+.0f} ms |"
        )
    (RESULTS / "startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
