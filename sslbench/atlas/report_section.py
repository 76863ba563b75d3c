"""The atlas section of the HTML report (``sslbench report``), for results that carry sweep coordinates:
the per-cell collapse odds, the 1-D slices' boundaries, the early-call target and the figures.

:mod:`sslbench.report` imports this module only when it writes a report, so taking its
PNG encoder from there makes no import cycle."""

from __future__ import annotations

import html

from sslbench.atlas.build import Atlas
from sslbench.atlas.early import TARGET_FRACTION, TARGET_PRECISION
from sslbench.atlas.figures import figures
from sslbench.atlas.render import cell_row, coords_text
from sslbench.report import png_data_uri


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return ("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + cells + "</tbody></table>")


def atlas_section(atlas: Atlas) -> str:
    """The section's HTML (tables, the early-call line and the figures as data URIs)."""
    head = ["cell", "seeds", *atlas.metrics, "P(complete)", "P(dimensional)", "P(collapse)", "onset", "settle"]
    parts = [('<p class="legend">Mean ± 95% t-interval over seeds; P over seeds as k/n [exact Clopper-Pearson 95%]; '
             "onset and settle as shares of training (docs/atlas/README.md).</p>")]
    for g in atlas.grids:
        parts.append(f"<h3>{html.escape(g.name)}</h3>" + _table(head, [cell_row(c, atlas.metrics) for c in g.cells]))
    rows = [[s.grid, s.axis, coords_text(s.fixed), s.boundary.summary] for s in atlas.slices]
    parts.append("<h3>Collapse boundaries (P(collapse) = 1/2)</h3>" + _table(["grid", "knob", "fixed", "boundary"], rows))
    best = next((r for r in atlas.rules if r.target != "not met"), None)
    goal = f"a call within the first {TARGET_FRACTION:.0%} of steps at >= {TARGET_PRECISION:.0%} precision"
    parts.append(f"<p>Early call ({goal}): "
                 + (html.escape(f"met by {best.rule}") if best else "not met by any rule replayed") + ".</p>")
    images = [f'<img src="{png_data_uri(f.figure)}" alt="{html.escape(f.title)}">' for f in figures(atlas)]
    parts.append('<div class="wide">' + "".join(images) + "</div>")
    return "".join(parts)
