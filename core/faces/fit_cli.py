"""``python -m core fit-head HEAD.obj --out HEAD.imfit``: the model's head fitted onto any head mesh;
``generate --head`` then writes the animation on that head (``apply_head``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..errors import ImitatorError

LANDMARK_HELP = ("JSON file {name: [x, y, z]} of target points overriding the automatic landmarks "
                 "(names: upper_lip_centre, lower_lip_centre, mouth_corner_left/right, nose_tip, chin, "
                 "eye_outer/inner_left/right, ear_left/right)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ..data.commands import DEFAULT_HEAD_CACHE

    p = sub.add_parser("fit-head", help="fit the model's head onto a head mesh of any topology (for generate --head)",
                       description=__doc__.splitlines()[0])
    p.add_argument("head", type=Path, help="target head mesh (.obj, any topology, scale and pose) or a FLAME "
                                           "model file (.pkl/.npz: its template head)")
    p.add_argument("--out", type=Path, required=True, help="head fit to write (.imfit)")
    p.add_argument("--landmarks", type=Path, help=LANDMARK_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_HEAD_CACHE, help="where the default head is cached")
    p.set_defaults(func=_run)


def read_landmarks(path: Path | None) -> dict[str, np.ndarray] | None:
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text())
        out = {str(k): np.asarray(v, np.float64).reshape(3) for k, v in data.items()}
    except (OSError, ValueError, AttributeError, TypeError) as e:
        raise ImitatorError(f"{path}: not a landmark file ({' '.join(str(e).split())[:80]}); write JSON "
                            f'like {{"nose_tip": [0, 0.1, 0.12]}}') from None
    return out


def fit_mesh_file(path: Path, cache_dir: Path, landmarks=None, progress=None):
    """(target Head, HeadFit) for an OBJ head mesh, fitted against the default head."""
    from .default_head import load_default_head
    from .head_fit import fit_head, read_obj_mesh

    if Path(path).suffix.lower() in (".pkl", ".npz"):  # a FLAME model file: its template head
        from .flame import load_flame

        target = load_flame(path).head(name=Path(path).stem)
    else:
        target = read_obj_mesh(path)
    source = load_default_head(cache_dir)
    fit = fit_head(source, target.vertices, target.triangles(), name=target.name,
                   target_topology=target.topology, landmarks=landmarks, progress=progress)
    return target, fit


def _run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.overwrite:
        raise ImitatorError(f"{args.out}: already exists; choose another --out or pass --overwrite")
    if args.out.suffix != ".imfit":
        raise ImitatorError(f"--out {args.out}: name the head fit *.imfit")
    _, fit = fit_mesh_file(args.head, args.cache_dir, read_landmarks(args.landmarks))
    fit.save(args.out)
    print(f"wrote {args.out}: '{fit.target_name}' ({fit.num_target_vertices} vertices) fitted in {fit.seconds:.1f} s, "
          f"scale {fit.scale:.4g}, distance to the fitted surface mean {fit.error_mean:.3g} / max "
          f"{fit.error_max:.3g} (mesh units)")
    return 0


def apply_head(head_path: Path, anim, model, cache_dir: Path):
    """``generate --head``: (Animation on the target, target Head for OBJ faces). ``head_path`` is an
    .obj or a FLAME model file (fitted now) or an .imfit (made by fit-head)."""
    from .default_head import load_default_head
    from .head_fit import HeadFit
    from .transfer import transfer_animation

    source = load_default_head(cache_dir)
    if model.config.topology not in ("", source.topology) or model.config.num_vertices != source.num_vertices:
        raise ImitatorError(f"--head needs a model of the default head; this one animates "
                            f"{model.config.num_vertices} vertices")
    if Path(head_path).suffix == ".imfit":
        fit = HeadFit.load(head_path)
        target = fit.target_head()
    else:
        target, fit = fit_mesh_file(Path(head_path), cache_dir)
    if fit.source_topology != source.topology:
        raise ImitatorError(f"{head_path}: the head fit was made for another model head (topology "
                            f"{fit.source_topology[:8]}); run fit-head again")
    centres = (model.config.lip_closure or {}).get("centres") or (
        int(source.regions["upper_lip_centre"][0]), int(source.regions["lower_lip_centre"][0]))
    return transfer_animation(anim, fit, target.vertices, tuple(centres)), target


def clip_triangles(clip_path: Path, clip_head: Path | None, flame) -> np.ndarray:
    """The faces of a clip's topology: from ``clip_head`` (.obj of that topology), the clip's first
    OBJ frame, or the FLAME model; a one-line error if none is known."""
    from .head_fit import HeadFit, read_obj_mesh

    if clip_head is not None:
        if Path(clip_head).suffix == ".imfit":
            return HeadFit.load(clip_head).target_head().triangles()
        return read_obj_mesh(clip_head).triangles()
    if flame is not None:
        return np.asarray(flame.faces, np.int64)
    if Path(clip_path).is_dir():
        from ..data.meshfiles import natural_key

        objs = sorted((p for p in Path(clip_path).iterdir() if p.suffix.lower() == ".obj"), key=natural_key)
        if objs:
            return read_obj_mesh(objs[0]).triangles()
    raise ImitatorError(f"{clip_path}: the clip is on another head topology and its faces are unknown; pass "
                        f"--clip-head MESH.obj (a mesh of the clip's topology) to map it onto the model head")


def clip_onto_model_head(clip, triangles: np.ndarray, source, fit=None, progress=None):
    """(clip on the model head, the fit used): a clip of another topology mapped through a head
    fit of its first frame (its neutral), or through ``fit`` when given."""
    import dataclasses

    from .head_fit import fit_head
    from .transfer import clip_to_model

    frames = np.asarray(clip.vertices, np.float32)
    name = Path(str(clip.name)).name or "clip"
    if fit is None:
        fit = fit_head(source, frames[0], triangles, name=name, progress=progress)
    mapped = clip_to_model(frames, fit, source.vertices)
    return dataclasses.replace(clip, vertices=mapped.astype(np.float32)), fit
