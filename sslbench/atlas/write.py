"""``atlas.md``, ``atlas.json`` and the PNGs of an atlas, written into one directory."""

from __future__ import annotations

import io
from pathlib import Path

from sslbench.atlas.build import Atlas
from sslbench.atlas.figures import figures
from sslbench.atlas.render import to_json, to_markdown
from sslbench.io import atomic_write_bytes, atomic_write_json, atomic_write_text


def write_atlas(atlas: Atlas, out: str | Path) -> list[Path]:
    """Write the atlas's files into ``out`` (created when missing); return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "atlas.md", out / "atlas.json"]
    atomic_write_text(written[0], to_markdown(atlas))
    atomic_write_json(written[1], to_json(atlas))
    for f in figures(atlas):
        buf = io.BytesIO()
        f.figure.savefig(buf, format="png")
        atomic_write_bytes(out / f.name, buf.getvalue())
        written.append(out / f.name)
    return written
