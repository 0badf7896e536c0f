"""Data-parallel training on torch.distributed (``settings.distributed`` of a train spec).

The launching process (``partsbin train --local`` or a worker) starts the ranks through
PyTorch's own launcher, ``python -m torch.distributed.run`` (c10d rendezvous; the same
program as ``torchrun``), each rank running :func:`main` of this module. Every rank
builds the same networks and aux heads from the spec (same seeds), wraps each step's
loss in DistributedDataParallel (gloo on CPU, NCCL on GPUs) and trains on its slice of
each global batch; the schemes (joint alternation, shared and frozen aux heads) are the
one-process code in :mod:`partsbin.trainer.engine`. Rank 0 writes the trained weights
(safetensors) to a work folder; the launching process loads them into its own copy of
the networks, checks that the ranks agree, and evaluates and publishes as after a
one-process run. Only that process talks to the registry: the ranks get the anchors and
init weights as local files and never see a token.

Several machines: every node runs the same spec (``nnodes``, ``rdzv_endpoint``) with
``partsbin train --local``; the node that holds global rank 0 publishes, the others
only train (docs/distributed.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from partsbin.parts.cancel import StopRequested, TimedOut
from partsbin.parts.cpus import available_cpus
from partsbin.parts.jobs.train import TrainSpec
from partsbin.parts.safetensors_format import load_state_dict
from partsbin.trainer.engine import AuxHeads, Network, freeze
from partsbin.trainer.loop import Progress

__all__ = ["train_distributed", "main"]

_AUX_FILES = {"rp": "aux-rp.safetensors", "dcc": "aux-dcc.safetensors"}


def state_sha256(modules: list[torch.nn.Module], *, buffers: bool) -> str:
    """A digest of the modules' parameters (and ``buffers``), to show ranks hold the same
    bytes. BatchNorm running statistics of trained modules are left out: each rank
    updates them from its own slice of the batch (DDP copies rank 0's to the others at
    the next forward, and rank 0's are the ones published)."""
    h = hashlib.sha256()
    for m in modules:
        tensors = m.state_dict() if buffers else dict(m.named_parameters())
        for name, t in sorted(tensors.items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _launcher_command(spec: TrainSpec, plan: Path, out: Path) -> list[str]:
    d = spec.settings.distributed
    assert d is not None
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={d.nproc_per_node}",
        f"--nnodes={d.nnodes}",
        "--max-restarts=0",
    ]
    if d.rdzv_endpoint is None:
        cmd.append("--standalone")  # one machine: a rendezvous on a free local port
    else:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={d.rdzv_endpoint}", f"--rdzv-id={d.rdzv_id}"]
    return [*cmd, "-m", "partsbin.trainer.distributed", str(plan), str(out)]


def train_distributed(
    spec: TrainSpec,
    nets: list[Network],
    aux: AuxHeads,
    *,
    init_path: Path | None,
    anchors: list[Any],
    progress: Progress | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train ``nets`` and ``aux`` (as :func:`partsbin.trainer.run.prepare` built them) over
    the processes ``spec.settings.distributed`` asks for; load rank 0's weights into them.
    Returns the training figures and what the run was (world size, backend, digests)."""
    progress = progress or Progress()
    d = spec.settings.distributed
    assert d is not None
    threads = spec.settings.threads or max(1, available_cpus() // d.nproc_per_node)
    with tempfile.TemporaryDirectory(prefix="partsbin-ddp-") as tmp:
        work = Path(tmp)
        plan = work / "plan.json"
        plan.write_text(
            json.dumps(
                {
                    "spec": spec.model_dump(mode="json"),
                    "init": str(init_path) if init_path else None,
                    "anchors": [{"component": c.raw, "path": str(c.path)} for c in anchors],
                    "threads": threads,
                    "every": progress.every,
                }
            )
        )
        out = work / "out"
        out.mkdir()
        log = work / "launcher.log"
        # Each rank gets its share of the CPUs: torch's default (every core) would
        # oversubscribe the machine N times over.
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        with log.open("wb") as log_fh:
            try:
                proc = subprocess.Popen(
                    _launcher_command(spec, plan, out), stdout=log_fh, stderr=subprocess.STDOUT, env=env
                )
            except OSError as exc:
                raise RuntimeError(
                    f"this worker could not start the {d.world_size} training processes: {exc}"
                ) from None
            _follow(proc, out / "progress.jsonl", progress)
        if proc.returncode != 0:
            # The ranks' own errors come before the launcher's summary.
            tail = log.read_text(errors="replace").strip().splitlines()[-80:]
            raise RuntimeError(
                f"distributed training failed (torch.distributed.run exited with {proc.returncode}):\n"
                + "\n".join(tail)
            )
        ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank-*.json"))]
        if len({r["aux"] for r in ranks}) > 1 or len({r["networks"] for r in ranks}) > 1:
            raise RuntimeError(f"the ranks ended with different weights, refused: {ranks}")
        info: dict[str, Any] = {
            "world_size": d.world_size,
            "nproc_per_node": d.nproc_per_node,
            "nnodes": d.nnodes,
            "threads_per_rank": threads,
        }
        if not (out / "stats.json").exists():
            # Another node holds global rank 0: it publishes.
            info["this_node_publishes"] = False
            info["message"] = (
                f"trained ranks {[r['rank'] for r in ranks]} of {d.world_size}; the node with rank 0 publishes"
            )
            return {}, info
        stats = json.loads((out / "stats.json").read_text())
        for k, net in enumerate(nets):
            net.model.load_state_dict(load_state_dict(out / f"net-{k}.safetensors"), strict=True)
        for key, name in _AUX_FILES.items():
            module = getattr(aux, key)
            if module is not None:
                module.load_state_dict(load_state_dict(out / name), strict=True)
        if spec.scheme == "incremental" and not aux.frozen:
            freeze(aux)  # as the one-process run leaves them
        info.update(backend=stats.pop("backend"), aux_sha256=ranks[0]["aux"], networks_sha256=ranks[0]["networks"])
        return stats, info


def _follow(proc: subprocess.Popen[bytes], progress_file: Path, progress: Progress) -> None:
    """Relay rank 0's progress lines until the launcher exits; stop it when asked to."""
    offset = 0
    while True:
        done = proc.poll() is not None
        if progress_file.exists():
            with progress_file.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            # Only whole lines: the last one may still be being written.
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.splitlines():
                progress.on_step(json.loads(line))
        if done:
            return
        try:
            progress.check()  # cancelled, or past the job's wall time
        except (StopRequested, TimedOut):
            proc.terminate()  # the launcher passes SIGTERM on to every rank
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> None:
    """One rank, as started by ``torch.distributed.run``: PLAN OUT_DIR."""
    import torch.distributed as dist

    from partsbin.client.component import Component
    from partsbin.parts.data import load_task
    from partsbin.trainer.loop import resolve_device
    from partsbin.trainer.run import aux_from_components, prepare, train_prepared

    plan_path, out_dir = argv if argv is not None else sys.argv[1:]
    plan = json.loads(Path(plan_path).read_text())
    out = Path(out_dir)
    spec = TrainSpec.model_validate(plan["spec"])
    torch.set_num_threads(plan["threads"])
    device = resolve_device(spec.settings)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    try:
        rank = dist.get_rank()
        tasks = [load_task(t, spec.settings.test_limit) for t in spec.tasks]
        init_state = load_state_dict(plan["init"]) if plan["init"] else None
        anchors = []
        for a in plan["anchors"]:
            comp = Component.from_api(a["component"])
            comp.path = Path(a["path"])
            anchors.append(comp)
        pulled = aux_from_components(anchors) if anchors else None
        tasks, nets, aux = prepare(spec, tasks, init_state, pulled)

        def report(info: dict[str, Any]) -> None:
            if rank == 0:
                with (out / "progress.jsonl").open("a") as fh:
                    fh.write(json.dumps(info) + "\n")

        stats = train_prepared(spec, nets, aux, device, Progress(on_step=report, every=plan["every"]))
        summary = {
            "rank": rank,
            # Aux heads frozen from the start (pulled anchors): every byte, buffers
            # included, is the same on every rank and as pulled.
            "aux": state_sha256(aux.modules(), buffers=pulled is not None),
            "networks": state_sha256([n.model for n in nets], buffers=False),
        }
        (out / f"rank-{rank}.json").write_text(json.dumps(summary))
        if rank == 0:
            for k, net in enumerate(nets):
                save_file(_plain(net.model.state_dict()), out / f"net-{k}.safetensors")
            for key, name in _AUX_FILES.items():
                module = getattr(aux, key)
                if module is not None:
                    save_file(_plain(module.state_dict()), out / name)
            (out / "stats.json").write_text(json.dumps({**stats, "backend": backend}))
    finally:
        dist.destroy_process_group()


def _plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


if __name__ == "__main__":
    main()
