"""Head fit time and accuracy on 2 threads: the default head decimated to 60 % (3k vertices), the
default head subdivided (20k vertices) and another person's head (MakeHuman identity targets),
each scaled, turned and moved; seconds per fit and the distance of the target to the fitted
surface (mm, in the model head's scale). One command: ``python -m bench.head_fit_bench``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

from bench.common import report  # noqa: E402


def subdivided(head) -> tuple[np.ndarray, np.ndarray]:
    """Each quad split into four (edge midpoints + centre): about 4x the vertices, same surface."""
    q = head.face_indices.reshape(-1, 4).astype(np.int64)
    v = head.vertices.astype(np.float64)
    edges = np.sort(np.stack([q, np.roll(q, -1, 1)], 2).reshape(-1, 2), 1)
    uniq, inv = np.unique(edges, axis=0, return_inverse=True)
    inv = inv.reshape(-1, 4) + len(v)
    centre = np.arange(len(q)) + len(v) + len(uniq)
    verts = np.concatenate([v, v[uniq].mean(1), v[q].mean(1)])
    quads = np.concatenate([np.stack([q[:, k], inv[:, k], centre, inv[:, k - 1]], 1) for k in range(4)])
    return verts, np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])


def main() -> None:
    from head_samples import IDENTITY, remesh, rotation_about

    from core.faces.default_head import build_default_head
    from core.faces.head_fit import fit_head

    head = build_default_head()
    R = rotation_about([0.2, 1.0, 0.1], 0.5)
    dense_v, dense_f = subdivided(head)
    cases = {"default head decimated 60%": remesh(head), "another identity decimated 55%":
             remesh(build_default_head(identity=IDENTITY), keep=0.55, scale=0.9, angle=-0.4, seed=3)}
    targets = {name: (t.vertices, t.triangles, t.scale) for name, t in cases.items()}
    targets["default head subdivided"] = (1.1 * dense_v @ R.T + 0.5, dense_f, 1.1)
    rows = []
    for name, (v, f, scale) in targets.items():
        t0 = time.perf_counter()
        fit = fit_head(head, v, f, name=name)
        rows.append({"target": name, "vertices": len(v), "fit_s": round(time.perf_counter() - t0, 2),
                     "scale_found": round(fit.scale, 4), "scale_true": scale,
                     "dist_mean_mm": round(fit.error_mean / fit.scale * 1000, 3),
                     "dist_max_mm": round(fit.error_max / fit.scale * 1000, 3)})
    report("head_fit", rows, {"threads": os.environ["OMP_NUM_THREADS"]})


if __name__ == "__main__":
    main()
