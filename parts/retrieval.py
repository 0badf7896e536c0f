"""Image retrieval metrics, as FCT reports them: CMC top-k and mAP.

Every query is ranked against the gallery by cosine similarity. When query and gallery
are the same images (embedded twice, e.g. new queries against a transformed old gallery),
``exclude_self`` leaves each image's own gallery entry out, as leave-one-out retrieval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = ["Retrieval", "retrieval_metrics", "pooled"]


@dataclass(frozen=True)
class Retrieval:
    top1: float
    top5: float
    mAP: float
    queries: int
    gallery: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def pooled(features: torch.Tensor) -> torch.Tensor:
    """Embeddings from junction features: global average pooling, as the heads see them."""
    return features.mean((2, 3)) if features.dim() == 4 else features


@torch.no_grad()
def retrieval_metrics(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    *,
    exclude_self: bool = False,
    chunk: int = 1024,
) -> Retrieval:
    """CMC top-1 / top-5 (the first / any of the five nearest gallery items has the query's
    class) and mean average precision over the whole ranked gallery."""
    q = F.normalize(pooled(query).float(), dim=1)
    g = F.normalize(pooled(gallery).float(), dim=1)
    if exclude_self and len(q) != len(g):
        raise ValueError("exclude_self needs the query and the gallery to be the same images")
    top1 = top5 = ap_sum = 0.0
    counted = 0
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ g.T
        if exclude_self:
            idx = torch.arange(start, start + len(sims))
            sims[torch.arange(len(sims)), idx] = -float("inf")
        order = sims.argsort(dim=1, descending=True)
        if exclude_self:
            order = order[:, :-1]  # the excluded self-match sorts last
        hits = gallery_labels[order] == query_labels[start : start + len(sims), None]
        top1 += float(hits[:, 0].sum())
        top5 += float(hits[:, :5].any(1).sum())
        positives = hits.sum(1)
        ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float32)
        precision = hits.float().cumsum(1) / ranks
        ap = (precision * hits).sum(1) / positives.clamp_min(1)
        has = positives > 0
        ap_sum += float(ap[has].sum())
        counted += int(has.sum())
    n = len(q)
    return Retrieval(top1 / n, top5 / n, ap_sum / max(counted, 1), n, len(g) - (1 if exclude_self else 0))
