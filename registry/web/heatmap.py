"""The group page's heatmap of measured recombination accuracy, as server-side SVG.

Rows are extractors, columns heads; a cell links to the evaluation it shows, and an
empty cell says "not measured". Built as one string rather than a template loop: a
50 x 50 group is 2,500 cells, and this keeps the page well inside its 100 ms budget
(bench/web_bench.py).
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from partsbin.registry.crud.evaluations import Cell
from partsbin.registry.db.models import Component

__all__ = ["heatmap_svg", "colour"]

CELL = 26
LABEL_CHARS = 40
CHAR_W = 6.4  # px per character of an 11px label
# viridis at 0, .25, .5, .75, 1: perceptually even, and readable in grey and by the colour-blind
_STOPS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def colour(value: float) -> str:
    v = min(1.0, max(0.0, value)) * (len(_STOPS) - 1)
    i = min(int(v), len(_STOPS) - 2)
    t = v - i
    a, b = _STOPS[i], _STOPS[i + 1]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))


_PALETTE = [colour(i / 100) for i in range(101)]


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _href(c: Component) -> str:
    return f"/ui/components/{c.namespace}/{c.name}/versions/{c.version}"


def heatmap_svg(extractors: list[Component], heads: list[Component], grid: dict[tuple[int, int], Cell]) -> Markup:
    left = round(12 + CHAR_W * min(LABEL_CHARS, max((len(e.ref) for e in extractors), default=10)))
    # Column labels run up and to the right at 45 degrees: room above and beyond the last column.
    slant = round(0.72 * CHAR_W * min(LABEL_CHARS, max((len(h.ref) for h in heads), default=10)))
    top = slant + 14
    width, height = left + CELL * len(heads) + slant + 10, top + CELL * len(extractors) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="recombination accuracy, extractors by heads">',
        '<defs><pattern id="not-measured" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f4f4f4"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#d0d0d0" stroke-width="2"/></pattern></defs>',
    ]
    # Everything that repeats along a row or a column is formatted once: 2,500 cells
    # formatted naively took 25 ms, most of a group page's time.
    head_refs = [escape(h.ref) for h in heads]
    xs = [left + j * CELL for j in range(len(heads))]
    text_xs = [f"{x + CELL / 2 - 0.5:.1f}" for x in xs]
    size = f'width="{CELL - 1}" height="{CELL - 1}"'
    for j, h in enumerate(heads):
        x = xs[j] + CELL // 2
        out.append(
            f'<a href="{_href(h)}" class="col-label"><text x="{x}" y="{top - 6}" '
            f'transform="rotate(-45 {x} {top - 6})">{escape(_short(h.ref))}<title>{head_refs[j]}</title></text></a>'
        )
    for i, e in enumerate(extractors):
        y = top + i * CELL
        ext_ref = escape(e.ref)
        out.append(
            f'<a href="{_href(e)}" class="row-label"><text x="{left - 6}" y="{y + CELL * 0.65:.0f}" '
            f'text-anchor="end">{escape(_short(e.ref))}<title>{ext_ref}</title></text></a>'
        )
        text_y = f"{y + CELL * 0.66:.1f}"
        for j, h in enumerate(heads):
            pair = f'data-extractor="{ext_ref}" data-head="{head_refs[j]}"'
            cell = grid.get((e.id, h.id))
            if cell is None:
                out.append(
                    f'<g class="cell not-measured" {pair}><rect x="{xs[j]}" y="{y}" {size} fill="url(#not-measured)"/>'
                    f"<title>{ext_ref} × {head_refs[j]}: not measured</title></g>"
                )
                continue
            step = min(100, max(0, round(cell.value * 100)))
            out.append(
                f'<a href="/ui/evaluations/{cell.id}" class="cell measured{" light" if step >= 60 else ""}" {pair}>'
                f'<rect x="{xs[j]}" y="{y}" {size} fill="{_PALETTE[step]}"/>'
                f'<text x="{text_xs[j]}" y="{text_y}">{step}</text>'
                f"<title>{ext_ref} × {head_refs[j]}: {cell.value:.1%} on {cell.samples} images of "
                f"{escape(cell.dataset)}</title></a>"
            )
    out.append("</svg>")
    return Markup("".join(out))
