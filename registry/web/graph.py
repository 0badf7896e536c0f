"""The lineage graph of a component page, as server-side SVG: where it came from on the
left, what came from it on the right, each edge labelled with the card's relation."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from partsbin.registry.crud.lineage import Lineage, Node

__all__ = ["lineage_svg"]

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 230, 42, 150, 16, 8
CHARS = 32


def _short(text: str) -> str:
    return text if len(text) <= CHARS else text[: CHARS - 1] + "…"


def _label(node: Node) -> tuple[str, str, str | None]:
    """(first line, second line, link) of a node's box."""
    c = node.component
    if c is not None:
        return (
            c.ref,
            c.role + (" · yanked" if c.yanked_at else ""),
            f"/ui/components/{c.namespace}/{c.name}/versions/{c.version}",
        )
    if node.job_id is not None:
        link = f"/ui/jobs/{node.job_id}" if node.job_id.isascii() and node.job_id.isdigit() else None
        return f"job {node.job_id}", "training job", link
    return node.missing or "", "not in this registry", None


def lineage_svg(graph: Lineage) -> Markup | None:
    if len(graph.nodes) < 2:
        return None
    depths = sorted({n.depth for n in graph.nodes.values()})
    columns: dict[int, list[Node]] = {d: [] for d in depths}
    for node in graph.nodes.values():
        columns[node.depth].append(node)
    tallest = max(len(col) for col in columns.values())
    width = PAD * 2 + len(depths) * BOX_W + (len(depths) - 1) * GAP_X
    height = PAD * 2 + tallest * BOX_H + (tallest - 1) * GAP_Y
    where: dict[str, tuple[float, float]] = {}
    for i, d in enumerate(depths):
        col = columns[d]
        top = PAD + (height - 2 * PAD - (len(col) * BOX_H + (len(col) - 1) * GAP_Y)) / 2
        for k, node in enumerate(col):
            where[node.key] = (PAD + i * (BOX_W + GAP_X), top + k * (BOX_H + GAP_Y))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}" role="img" aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker></defs>',
    ]
    for edge in graph.edges:
        (sx, sy), (tx, ty) = where[edge.source], where[edge.target]
        # Drawn from the origin to what came from it, left to right.
        if tx <= sx:
            x1, y1, x2, y2 = tx + BOX_W, ty + BOX_H / 2, sx, sy + BOX_H / 2
        else:
            x1, y1, x2, y2 = sx + BOX_W, sy + BOX_H / 2, tx, ty + BOX_H / 2
        out.append(
            f'<g class="edge" data-kind="{escape(edge.kind)}"><path d="M{x1:.0f},{y1:.0f} C{(x1 + x2) / 2:.0f},{y1:.0f} '
            f'{(x1 + x2) / 2:.0f},{y2:.0f} {x2:.0f},{y2:.0f}" fill="none" stroke="#888" marker-end="url(#arrow)"/>'
            f'<text x="{(x1 + x2) / 2:.0f}" y="{(y1 + y2) / 2 - 4:.0f}" text-anchor="middle">{escape(edge.label)}</text></g>'
        )
    for node in graph.nodes.values():
        x, y = where[node.key]
        first, second, link = _label(node)
        cls = "node self" if node.depth == 0 else "node"
        box = (
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{x + 10:.0f}" y="{y + 17:.0f}" class="name">{escape(_short(first))}</text>'
            f'<text x="{x + 10:.0f}" y="{y + 33:.0f}" class="meta">{escape(second)}</text>'
            f"<title>{escape(first)}</title>"
        )
        if link:
            out.append(f'<a href="{escape(link)}" class="{cls}">{box}</a>')
        else:
            out.append(f'<g class="{cls}">{box}</g>')
    out.append("</svg>")
    return Markup("".join(out))
