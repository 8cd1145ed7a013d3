"""Look at a dataset utterance: render its mesh sequence with its audio to an mp4.

``python -m core dataset preview ITEM --data DIR --out x.mp4`` reads the processed-VOCASET layout
(``vertices_npy/<item>.npy`` (T, 3V) at the ``fps`` of ``dataset.json``, 60 if absent, and
``wav/<item>.wav``) and the triangles from ``DIR/faces.npy`` or, failing that, the default head.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from ..errors import ImitatorError
from ..faces.head import Head
from ..render import ALBEDO, render_preview

log = logging.getLogger(__name__)

DEFAULT_FPS = 60.0  # VOCASET's
FACES_FILE = "faces.npy"

# Linear RGB for the default head's inner parts, so the open mouth reads at a glance.
_REGION_COLORS = {
    "tongue": (0.30, 0.10, 0.10),
    "teeth": (0.80, 0.78, 0.70),
    "eyelashes_left": (0.04, 0.04, 0.04),
    "eyelashes_right": (0.04, 0.04, 0.04),
}


def head_colors(head: Head) -> np.ndarray:
    """(V, 3) colours: grey skin; tongue, teeth and eyelashes tinted where the head names them."""
    colors = np.tile(ALBEDO, (head.num_vertices, 1)).astype(np.float32)
    for region, rgb in _REGION_COLORS.items():
        if region in head.regions:
            colors[head.regions[region]] = rgb
    return colors


def _dataset_info(root: Path) -> dict:
    path = root / "dataset.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImitatorError(f"{path}: not readable JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(info, dict):
        raise ImitatorError(f"{path}: expected a JSON object")
    return info


def _read_faces(path: Path) -> np.ndarray:
    try:
        faces = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImitatorError(f"{path}: not a readable .npy array ({exc})") from None
    if (faces.ndim != 2 or faces.shape[1] not in (3, 4)
            or not np.issubdtype(faces.dtype, np.integer)):
        raise ImitatorError(f"{path}: expected (F, 3) triangles or (F, 4) quads of vertex indices, "
                            f"got {faces.shape} {faces.dtype}")
    if faces.shape[1] == 4:  # quads -> two triangles each
        faces = np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]])
    return faces.astype(np.int64)


def preview_item(dataset_dir: str | Path, item_name: str, out_path: str | Path, size: int = 512,
                 head_cache_dir: str | Path | None = None, side: bool = False,
                 mouth: bool = True) -> Path:
    """Render utterance ``item_name`` of a processed-VOCASET folder, with its audio, to an mp4.

    Triangles come from ``faces.npy`` in the folder if present, else from the default head (built
    or read in ``head_cache_dir``). ``mouth`` adds a lip close-up when the head names its lips.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise ImitatorError(f"Dataset folder not found: {root}")
    compact = not (root / "vertices_npy").is_dir() and (root / "shape_keys.npy").is_file()
    npy = root / ("arkit" if compact else "vertices_npy") / f"{item_name}.npy"
    wav = root / "wav" / f"{item_name}.wav"
    for path in (npy, wav):
        if not path.is_file():
            raise ImitatorError(f"Dataset item '{item_name}' incomplete: {path} not found")
    info = _dataset_info(root)
    fps = info.get("fps", DEFAULT_FPS)
    if not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0:
        raise ImitatorError(
            f"{root / 'dataset.json'}: fps is {fps!r}; it must be a positive number")
    if compact:  # the compact layout: ARKit weights expanded by the corpus reader
        from .vocaset import open_corpus

        corpus = open_corpus(root)
        utt = next((u for u in corpus.utterances if u.key == item_name), None)
        if utt is None:
            raise ImitatorError(f"Dataset item '{item_name}' is not an utterance of {root}")
        vertices = corpus.read_vertices(utt)
    else:
        try:
            flat = np.load(npy, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ImitatorError(f"{npy}: not a readable .npy array ({exc})") from None
        if flat.ndim != 2 or flat.shape[0] == 0 or flat.shape[1] == 0 or flat.shape[1] % 3:
            raise ImitatorError(f"{npy}: expected (frames, 3 x vertices), got shape {flat.shape}")
        vertices = flat.reshape(flat.shape[0], -1, 3)
    if not np.isfinite(vertices).all():
        raise ImitatorError(f"{npy}: holds NaN or Inf values")

    lips, colors = None, None
    if (root / FACES_FILE).is_file():
        triangles = _read_faces(root / FACES_FILE)
        source = str(root / FACES_FILE)
    else:
        if head_cache_dir is None:
            raise ImitatorError(
                f"{root} has no {FACES_FILE}: pass the default head's cache folder to use its "
                f"triangles, or save the mesh's (F, 3) triangles as {root / FACES_FILE}")
        from ..faces.default_head import load_default_head

        head = load_default_head(Path(head_cache_dir))
        if head.num_vertices != vertices.shape[1]:
            raise ImitatorError(
                f"{npy} has {vertices.shape[1]} vertices but the default head has "
                f"{head.num_vertices}; save the mesh's (F, 3) triangles as {root / FACES_FILE}")
        topology = info.get("topology")
        if isinstance(topology, str) and topology != head.topology:
            raise ImitatorError(
                f"{root / 'dataset.json'} names topology {topology} but the default head is "
                f"{head.topology}; save the mesh's (F, 3) triangles as {root / FACES_FILE}")
        triangles = head.triangles()
        lips = head.regions.get("lips")
        colors = head_colors(head)
        source = "the default head"
    if triangles.size and (triangles.min() < 0 or triangles.max() >= vertices.shape[1]):
        raise ImitatorError(
            f"Triangles of {source} index vertices up to {triangles.max()} but {npy} has "
            f"{vertices.shape[1]} vertices")
    log.info("Rendering %s: %d frames at %g fps, %d vertices", item_name, len(vertices), fps,
             vertices.shape[1])
    return render_preview(vertices, triangles, float(fps), out_path, audio_path=wav, size=size,
                          side=side, mouth=lips if mouth else None, colors=colors)


def _run_preview(args: argparse.Namespace) -> int:
    preview_item(args.data, args.item, args.out, size=args.size, head_cache_dir=args.head_cache,
                 side=args.side, mouth=args.mouth)  # logs "Wrote <path> ..."
    return 0


def add_preview_command(dataset_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``preview ITEM --data DIR --out x.mp4 [--size N]`` to the ``dataset`` command group."""
    p = dataset_subparsers.add_parser(
        "preview", help="render an utterance (front view + lip close-up) with its audio to an mp4",
        description="Render an utterance of a processed-VOCASET folder with its audio to an mp4 "
                    "(H.264 + AAC) for judging the motion by eye.")
    p.add_argument("item", help="utterance name, e.g. subject_sentence (the file stem)")
    p.add_argument("--data", required=True, type=Path, help="dataset folder (wav/, vertices_npy/)")
    p.add_argument("--out", required=True, type=Path, help="output .mp4")
    p.add_argument("--size", type=int, default=512, help="pixels per view (default 512)")
    p.add_argument("--side", action="store_true", help="add a profile view")
    p.add_argument("--mouth", action=argparse.BooleanOptionalAction, default=True,
                   help="add a lip close-up when the head names its lips (default on)")
    p.add_argument("--head-cache", type=Path, default=None,
                   help="default head cache folder (used when the dataset has no faces.npy)")
    p.set_defaults(func=_run_preview)
    return p
