"""Push and pull through the registry against straight to S3, with the registry's CPU time.

    python bench/transfer_bench.py [--sizes 100 1000]   # writes bench/results/transfers.{json,md}

One registry process (`partsbin serve` on PostgreSQL-less SQLite and a `weed mini` S3
server, both on loopback) serves twice: with `PARTSBIN_S3_DIRECT_TRANSFERS=false` every
byte goes through it; with `true` (the default) downloads redirect to presigned URLs
and pushes upload to the bucket, the registry reading the object once to check its
sha256. For a component of each size: the client's wall time for `Registry.push` and
`Registry.pull` (which verifies the sha256), and the registry process's CPU seconds
(user + system, from /proc) spent on that transfer. Best of ROUNDS, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _machine import machine_info

from partsbin import Registry
from partsbin.parts.card import CARD_METADATA_KEY
from partsbin.parts.describe import card_for
from partsbin.parts.safetensors_format import save_state_dict

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ROUNDS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _component(path: Path, megabytes: int) -> Path:
    """A Wide ResNet head of about ``megabytes`` MB: the narrowest, shallowest config that
    reaches it (size grows with widen² and with depth; widen is capped at 32)."""
    import torch

    from partsbin.parts.archs import build

    def size(cfg: dict[str, int]) -> tuple[int, torch.nn.Module]:
        with torch.device("meta"):
            head = build("wide_resnet", **cfg).head()
        return sum(v.numel() * v.element_size() for v in head.state_dict().values()), head

    for depth in (16, 22, 28, 40, 52):
        for widen in range(1, 33):
            cfg = {"depth": depth, "widen": widen, "in_chans": 1, "num_classes": 10}
            nbytes, meta = size(cfg)
            if nbytes >= 0.95 * megabytes * 1e6:
                break
        else:
            continue
        break
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in meta.state_dict().items()}
    card = card_for(
        name=f"bench/head-{megabytes}mb",
        role="head",
        arch="wide_resnet",
        config=cfg,
        split="stage2",
        labels=[str(i) for i in range(10)],
    )
    save_state_dict(state, path, {CARD_METADATA_KEY: card.embedded_json()})
    return path


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Weed:
    def __init__(self, work: Path) -> None:
        beside = Path(sys.executable).parent / "weed"
        weed = shutil.which("weed") or str(beside)
        work.mkdir(parents=True, exist_ok=True)
        self.ports = {n: _free_port() for n in ("master", "volume", "filer", "s3", "admin")}
        p = self.ports
        cmd = [
            weed,
            "mini",
            f"-dir={work}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}",
            f"-admin.port={p['admin']}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
        self.endpoint = f"http://127.0.0.1:{p['s3']}"
        import boto3

        deadline = time.monotonic() + 60
        while True:
            try:
                boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket="bench")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Server:
    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "PARTSBIN_DATA_DIR": str(work)}
        subprocess.run(
            [sys.executable, "-m", "partsbin", "db", "upgrade"], env=self.env, check=True, capture_output=True
        )
        made = subprocess.run(
            [sys.executable, "-m", "partsbin", "token", "create", "--scope", "admin"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        self.token = made.stdout.strip().splitlines()[-1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "partsbin", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the registry did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _measure(server: Server, original: Path, direct: bool, work: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for rnd in range(ROUNDS):
        # Every round uploads new bytes (the same bytes again are the same version).
        path = _renamed(original, f"{'direct' if direct else 'proxied'}{rnd}")
        cache = work / f"cache-{direct}-{rnd}"
        with Registry(url=server.url, token=server.token, cache_dir=cache, direct=direct or False) as reg:
            cpu, t = _cpu_seconds(server.proc.pid), time.perf_counter()
            comp = reg.push(path)
            push_s, push_cpu = time.perf_counter() - t, _cpu_seconds(server.proc.pid) - cpu
            cpu, t = _cpu_seconds(server.proc.pid), time.perf_counter()
            reg.pull(comp.ref)
            pull_s, pull_cpu = time.perf_counter() - t, _cpu_seconds(server.proc.pid) - cpu
        shutil.rmtree(cache, ignore_errors=True)
        path.unlink()
        for key, value in (("push_s", push_s), ("push_cpu_s", push_cpu), ("pull_s", pull_s), ("pull_cpu_s", pull_cpu)):
            out[key] = min(out.get(key, value), value)
    return out


def _renamed(path: Path, tag: str) -> Path:
    """The same tensors under another component name."""
    from safetensors import safe_open

    from partsbin.parts.safetensors_format import load_state_dict

    with safe_open(str(path), "pt") as f:
        card = json.loads(f.metadata()[CARD_METADATA_KEY])
    card["name"] = f"{card['name']}-{tag}"
    out = path.with_name(f"{path.stem}-{tag}.safetensors")
    save_state_dict(
        load_state_dict(path), out, {CARD_METADATA_KEY: json.dumps(card, sort_keys=True, separators=(",", ":"))}
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="component sizes in MB")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="partsbin-transfers-"))
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PARTSBIN_NO_PROGRESS": "1",
        }
    )
    weed = Weed(work / "weed")
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        env = {
            **os.environ,
            "PARTSBIN_STORAGE_URL": "s3://bench/pb",
            "PARTSBIN_S3_ENDPOINT_URL": weed.endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PARTSBIN_NO_PROGRESS": "1",
            "PARTSBIN_MAX_UPLOAD_BYTES": str(4 * 1024**3),
        }
        os.environ.update(
            {
                k: env[k]
                for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "PARTSBIN_NO_PROGRESS")
            }
        )
        for mb in args.sizes:
            path = _component(work / f"head-{mb}mb.safetensors", mb)
            size = path.stat().st_size
            results[f"{size / 1e6:.0f} MB"] = {}
            for direct in (False, True):
                server = Server(
                    work / f"registry-{mb}-{direct}", {**env, "PARTSBIN_S3_DIRECT_TRANSFERS": str(direct).lower()}
                )
                try:
                    figures = _measure(server, path, direct, work)
                finally:
                    server.stop()
                results[f"{size / 1e6:.0f} MB"]["straight to S3" if direct else "through the registry"] = figures
                print(f"{size / 1e6:.0f} MB, direct={direct}: {json.dumps(figures)}", flush=True)
            path.unlink(missing_ok=True)
            for p in work.glob("head-*"):
                p.unlink()
    finally:
        weed.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = {"machine": machine_info(), "rounds": ROUNDS, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transfers.json").write_text(json.dumps(out, indent=2) + "\n")
    m = out["machine"]
    lines = [
        "# Transfers through the registry and straight to S3",
        "",
        f"`python bench/transfer_bench.py` on {m['cpus']} CPU cores ({m['cpu_model']}), Python {m['python']}; "
        f"registry, S3 (`weed mini`) and client on one machine, loopback; best of {ROUNDS}. CPU: the registry "
        "process's user + system seconds for the transfer.",
        "",
        "| component | how | push | registry CPU (push) | pull (sha256 verified) | registry CPU (pull) |",
        "|---|---|---|---|---|---|",
    ]
    for size, by_how in results.items():
        for how, f in by_how.items():
            lines.append(
                f"| {size} | {how} | {f['push_s']:.2f} s | {f['push_cpu_s']:.2f} s | {f['pull_s']:.2f} s | {f['pull_cpu_s']:.2f} s |"
            )
    (RESULTS / "transfers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
