"""Streamed image data at a real size (issue 24, item 3): memory and throughput.

Generates 20,000 training and 2,000 test JPEGs of 96×96 pixels (10 classes; each class a
colour and stripe pattern of its own, under noise) in a temporary folder, then measures:

(a) peak memory of one epoch of a real ``train`` job (``run_job``, independent scheme,
    ResNet-8 of width 4, batch 64, random-resized crop and flip, 2 DataLoader workers) through the
    streamed source, then its own-task evaluation and publishing to an embedded registry;
    and the same job on a tenth of the images, to show that the memory does not grow with them.
    The job runs in a process of its own; a thread of this process samples, every 50 ms,
    the resident memory of that process and all its descendants (the DataLoader workers)
    from /proc: the sum of their RSS (pages a forked worker shares with its parent counted
    once per process: an upper bound) and the sum of their PSS (shared pages divided
    among the processes sharing them). Target: below 2 GiB.
(b) throughput (images/s) of the product's pipeline (``load_data`` →
    ``StreamedImages.training_batches``, as the train kind iterates it) against a bare
    ``torch.utils.data.DataLoader`` loop over the same ``ImageFiles`` dataset, sampler
    and worker count, in alternating rounds in one process. Target: ratio ≥ 0.9.
(c) the benchmark (``Registry.bench``, in a process of its own) rebuilding the job's test
    set from its card, streamed, and measuring extractor × head on it: its peak memory
    the same way, and its time.

    flock /tmp/heavy.lock python bench/stream_bench.py            # writes bench/results/stream.{md,json}
    flock /tmp/heavy.lock python bench/stream_bench.py --images 2000 --test 400   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
GiB = 1024**3
CLASSES = [f"c{i}" for i in range(10)]


# -- data ----------------------------------------------------------------------------------------
def generate(root: Path, n_train: int, n_test: int, size: int) -> float:
    """JPEGs at ``root/{train,test}/<class>/<i>.jpg``; returns their total size in bytes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    total = 0
    for split, n in (("train", n_train), ("test", n_test)):
        for c, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            angle = np.pi * c / len(CLASSES)
            stripes = np.sin(2 * np.pi * (3 + c % 4) * (np.cos(angle) * xx + np.sin(angle) * yy))
            colour = np.array([(c * 37) % 256, (c * 91) % 256, (c * 53 + 80) % 256], np.float32)
            base = (0.5 + 0.35 * stripes)[..., None] * colour
            for i in range(n // len(CLASSES)):
                shift = rng.integers(0, size, 2)
                pixels = np.roll(base, tuple(shift), axis=(0, 1)) + rng.normal(0, 25, (size, size, 3))
                path = root / split / cls / f"{i}.jpg"
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
                total += path.stat().st_size
    return total


def data_spec(root: Path, workers: int, size: int) -> dict[str, Any]:
    return {
        "source": "folder",
        "path": str(root),
        "stream": {"size": size, "crop": "random-resized", "flip": True, "workers": workers},
    }


# -- memory of a process tree ---------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _memory(pid: int) -> tuple[int, int, int]:
    """(RSS sum, PSS sum, processes) of ``pid`` and its descendants, in bytes."""
    rss = pss = n = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            n += 1
        except OSError:
            continue
    return rss, pss, n


def run_sampled(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``python args`` and sample its process tree's memory until it ends."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, text=True)
    peak = {"rss": 0, "pss": 0, "processes": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss, pss, n = _memory(proc.pid)
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            peak["processes"] = max(peak["processes"], n)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed with exit status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    return {
        **result,
        "wall_seconds": time.perf_counter() - started,
        "peak_rss_bytes": peak["rss"],
        "peak_pss_bytes": peak["pss"],
        "processes": peak["processes"],
    }


# -- what the child processes run ------------------------------------------------------------------
def child_train(root: Path, workers: int, size: int, n_train: int, batch: int) -> None:
    from partsbin import Registry
    from partsbin.parts.jobs.train import TrainSpec
    from partsbin.trainer.jobs import run_job

    spec = TrainSpec.model_validate(
        {
            "name": "streamed",
            "namespace": "bench",
            "scheme": "independent",
            "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 4}},
            "tasks": [{"name": "pics", "data": data_spec(root, workers, size)}],
            # One epoch: every training image once.
            "settings": {"steps": n_train // batch, "batch_size": batch, "threads": 1, "lr": 0.05, "seed": 0},
        }
    )
    with Registry(os.environ["BENCH_URL"], os.environ["BENCH_TOKEN"], cache_dir=root.parent / "train-cache") as reg:
        t0 = time.perf_counter()
        result = run_job(spec, reg)
        seconds = time.perf_counter() - t0
    assert result.train is not None
    print(
        json.dumps(
            {
                "refs": result.refs,
                "steps": result.train.steps,
                "train_seconds": result.train.seconds,
                "train_images_per_s": result.train.images_per_s,
                "job_seconds": seconds,
                "own_task_accuracy": result.tasks["pics"].own_task_accuracy,
                "test_images": result.tasks["pics"].test_images,
            }
        )
    )


def child_bench(root: Path, extractor: str, head: str) -> None:
    from partsbin import Registry

    with Registry(os.environ["BENCH_URL"], os.environ["BENCH_TOKEN"], cache_dir=root.parent / "bench-cache") as reg:
        t0 = time.perf_counter()
        cell = reg.bench([extractor], [head], post=False, threads=1).cells[0]
        seconds = time.perf_counter() - t0
    print(json.dumps({"accuracy": cell.accuracy, "samples": cell.samples, "bench_seconds": seconds}))


# -- throughput: the product's pipeline against a bare DataLoader loop ----------------------------
def throughput(root: Path, workers: int, size: int, batch: int, batches: int, rounds: int) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader

    from partsbin.parts.data import StreamedImages, load_data
    from partsbin.parts.data.spec import DataSpec
    from partsbin.parts.data.stream import TrainingBatches

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    images = load_data(DataSpec.model_validate(data_spec(root, workers, size)), "train")
    listing = time.perf_counter() - t0
    assert isinstance(images, StreamedImages)

    def product(seed: int) -> float:
        stream = images.training_batches(batch, seed=seed)
        next(stream)  # the workers started: time the steady state
        t = time.perf_counter()
        for _ in range(batches):
            next(stream)
        seconds = time.perf_counter() - t
        stream.close()
        return batches * batch / seconds

    def bare(seed: int) -> float:
        loader = DataLoader(
            images.files,
            batch_sampler=TrainingBatches(len(images), batch, seed),
            num_workers=workers,
            persistent_workers=workers > 0,
        )
        it = iter(loader)
        next(it)
        t = time.perf_counter()
        for _ in range(batches):
            next(it)
        seconds = time.perf_counter() - t
        del it
        return batches * batch / seconds

    runs: dict[str, list[float]] = {"product": [], "bare": []}
    for r in range(rounds):
        # Alternating, and each round's first of the two alternating too.
        for name in ("product", "bare") if r % 2 == 0 else ("bare", "product"):
            runs[name].append((product if name == "product" else bare)(seed=r))
            print(f"  round {r + 1}: {name} {runs[name][-1]:,.0f} images/s", file=sys.stderr)
    median = {k: float(np.median(v)) for k, v in runs.items()}
    return {
        "listing_and_digest_seconds": listing,
        "images_per_s": runs,
        "median_images_per_s": median,
        "ratio": median["product"] / median["bare"],
        "batches_per_round": batches,
    }


# -- the report -----------------------------------------------------------------------------------
def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream.json").write_text(json.dumps(results, indent=2) + "\n")
    a, b, c, s = results["train"], results["throughput"], results["bench"], results["train_small"]
    cfg = results["config"]
    lines = [
        "# Streamed image data at a real size",
        "",
        f"`python bench/stream_bench.py` ({cfg['n_train']:,} training and {cfg['n_test']:,} test JPEGs of "
        f"{cfg['size']}×{cfg['size']} px, 10 classes, {cfg['megabytes']:.0f} MB on disk; "
        f"{cfg['workers']} DataLoader workers; {cfg['cpus']} CPUs; {results['date']}).",
        "",
        "Memory: the job's process and its DataLoader workers together, sampled every 50 ms from /proc "
        "(RSS summed over the processes counts the pages a forked worker shares with its parent once per "
        "process, an upper bound; PSS divides them among the sharers).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| (a) train job, one epoch ({a['steps']} steps of {cfg['batch']}), evaluation, publishing: peak RSS "
        f"(sum, {a['processes']} processes) | {a['peak_rss_bytes'] / GiB:.2f} GiB | < 2 GiB |",
        f"| (a) same, peak PSS | {a['peak_pss_bytes'] / GiB:.2f} GiB | |",
        f"| (a) the same job on {cfg['n_train_small']:,} images ({s['steps']} steps): peak RSS (sum) / PSS | "
        f"{s['peak_rss_bytes'] / GiB:.2f} / {s['peak_pss_bytes'] / GiB:.2f} GiB | |",
        f"| (a) training images/s (steps with the model, decoding in the workers) | {a['train_images_per_s']:,.0f} | |",
        f"| (a) job wall time (listing and digests of both splits, training, evaluation, publishing) | "
        f"{a['job_seconds']:.0f} s | |",
        f"| (b) product pipeline, images/s (median of {len(b['images_per_s']['product'])} rounds) | "
        f"{b['median_images_per_s']['product']:,.0f} | |",
        f"| (b) bare DataLoader loop, same dataset, sampler and workers | {b['median_images_per_s']['bare']:,.0f} | |",
        f"| (b) ratio product / bare | {b['ratio']:.3f} | ≥ 0.9 |",
        f"| (b) listing and manifest digest of {cfg['n_train']:,} files | {b['listing_and_digest_seconds']:.1f} s | |",
        f"| (c) benchmark on the streamed test set ({c['samples']:,} images): wall time | {c['bench_seconds']:.1f} s | |",
        f"| (c) benchmark: peak RSS (sum) / PSS | {c['peak_rss_bytes'] / GiB:.2f} / "
        f"{c['peak_pss_bytes'] / GiB:.2f} GiB | |",
        "",
        f"The whole training split as float32 tensors would be {cfg['n_train'] * 3 * cfg['size'] ** 2 * 4 / GiB:.2f} GiB "
        "before any copy; streamed, no list of decoded images and no whole-set tensor exists. "
        f"Own-task accuracy after one epoch: {a['own_task_accuracy']:.1%} on {a['test_images']:,} test images "
        f"(the benchmark's figure for the same pair: {c['accuracy']:.1%}).",
        "",
        "Rounds of (b), images/s: product " + ", ".join(f"{v:,.0f}" for v in b["images_per_s"]["product"])
        + "; bare " + ", ".join(f"{v:,.0f}" for v in b["images_per_s"]["bare"]) + ".",
        "",
    ]  # fmt: skip
    (RESULTS / "stream.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--test", type=int, default=2_000)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--small", type=int, default=2_000, help="training images of the comparison job")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batches", type=int, default=40, help="batches timed per throughput round")
    parser.add_argument("--no-write", action="store_true", help="print the results, leave bench/results alone")
    parser.add_argument("--child", choices=["train", "bench"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--refs", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "train":
        return child_train(args.root, args.workers, args.size, args.images, args.batch)
    if args.child == "bench":
        return child_bench(args.root, *args.refs)

    from partsbin.parts.cpus import available_cpus
    from partsbin.registry.config import Settings
    from partsbin.registry.embedded import embedded_registry

    with tempfile.TemporaryDirectory(prefix="partsbin-stream-") as tmp:
        root = Path(tmp) / "pics"
        t0 = time.perf_counter()
        size_bytes = generate(root, args.images, args.test, args.size)
        small_root = Path(tmp) / "small"
        generate(small_root, args.small, args.test, args.size)
        print(f"generated {args.images + args.test:,} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        common = ["--root", str(root), "--workers", str(args.workers), "--size", str(args.size)]
        with embedded_registry(Settings(data_dir=Path(tmp) / "registry")) as emb:
            env = {**os.environ, "BENCH_URL": emb.url, "BENCH_TOKEN": emb.token, "PARTSBIN_NO_PROGRESS": "1"}
            me = str(Path(__file__).resolve())
            train = run_sampled(
                [me, "--child", "train", *common, "--images", str(args.images), "--batch", str(args.batch)], env
            )
            print(f"train job: peak RSS {train['peak_rss_bytes'] / GiB:.2f} GiB", file=sys.stderr)
            small_common = [*common[:1], str(small_root), *common[2:]]
            small = run_sampled(
                [me, "--child", "train", *small_common, "--images", str(args.small), "--batch", str(args.batch)], env
            )
            print(f"small train job: peak RSS {small['peak_rss_bytes'] / GiB:.2f} GiB", file=sys.stderr)
            ext = next(r for r in train["refs"] if "-extractor@" in r)
            head = next(r for r in train["refs"] if "-head@" in r)
            bench = run_sampled([me, "--child", "bench", *common, "--refs", ext, head], env)
            print(f"bench: {bench['bench_seconds']:.1f} s", file=sys.stderr)
        tput = throughput(root, args.workers, args.size, args.batch, args.batches, args.rounds)
    results = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "config": {
            "n_train": args.images,
            "n_train_small": args.small,
            "n_test": args.test,
            "size": args.size,
            "workers": args.workers,
            "batch": args.batch,
            "cpus": available_cpus(),
            "megabytes": size_bytes / 1e6,
        },
        "train": train,
        "train_small": small,
        "bench": bench,
        "throughput": tput,
    }
    if args.no_write:
        print(json.dumps(results, indent=2))
    else:
        write(results)
        print((RESULTS / "stream.md").read_text())


if __name__ == "__main__":
    main()
