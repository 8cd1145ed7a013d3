"""Headless renderer speed: frames/s at 256/512 px (and 1024 px front) for the default head
(jawOpen 0..1), per view, and the whole preview (front + lip close-up, H.264 + AAC) as frames/s.

``python -m bench.render_bench [--head-cache DIR] [--frames N]``; best of 3 runs per row.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import report, timed  # noqa: E402
from core import render  # noqa: E402
from core.data.preview import head_colors  # noqa: E402
from core.faces.default_head import load_default_head  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head-cache", type=Path,
                    default=Path(tempfile.gettempdir()) / "imitator-head")
    ap.add_argument("--frames", type=int, default=30)
    args = ap.parse_args(argv)
    head = load_default_head(args.head_cache)
    tris = head.triangles()
    w = np.linspace(0.0, 1.0, args.frames)[:, None, None]
    verts = head.vertices[None] + w * head.shape_keys["jawOpen"][None]
    rows = []
    views = (("front", None), ("side", None), ("mouth", head.regions["lips"]))
    cases = [(s, v, f) for s in (256, 512) for v, f in views] + [(1024, *views[0])]
    for size, view, focus in cases:
            seconds = timed(lambda: render.render_frames(
                verts, tris, size=size, view="side" if view == "side" else "front", focus=focus))
            rows.append({"what": f"render {view}", "size": size, "frames": args.frames,
                         "frames_per_s": args.frames / seconds})
    with tempfile.TemporaryDirectory() as tmp:
        seconds = timed(lambda: render.render_preview(
            verts, tris, 30.0, Path(tmp) / "p.mp4", size=512, mouth=head.regions["lips"],
            colors=head_colors(head)))
    rows.append({"what": "preview front+mouth mp4", "size": 512, "frames": args.frames,
                 "frames_per_s": args.frames / seconds})
    report("render_bench", rows, {"vertices": head.num_vertices, "triangles": int(len(tris))})


if __name__ == "__main__":
    main()
