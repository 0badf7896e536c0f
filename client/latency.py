"""Latency and throughput of an assembled model."""

from __future__ import annotations

import time

import torch

from partsbin.client.assemble import AssembledModel

__all__ = ["measure_latency"]


def measure_latency(
    model: AssembledModel, x: torch.Tensor, batch_size: int, device: str = "cpu"
) -> tuple[float, float]:
    model.to(device)
    batch = x[:batch_size].to(device)
    # CUDA runs asynchronously: time from a synchronised start to a synchronised end.
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    with torch.no_grad():
        model(batch)  # warm-up
        sync()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            model(batch)
            sync()
            times.append(time.perf_counter() - t)
    best = min(times)
    return best * 1000, len(batch) / best
