"""Metrics of speech-driven facial animation, computed the way the papers compute them.

Per frame t, with predicted and ground-truth vertices p_t, g_t (V, 3), in metres:

* **lip vertex error** (FaceFormer, CodeTalker, Imitator's ``lip_max_l2``): max over lip vertices of
  the distance |p_tv - g_tv|, mean over all frames of all sequences. Reported in mm, and in
  VOCASET's convention: the *squared* distance (m^2) maxed and averaged the same way, x 1e-5
  (FaceFormer ``test.py``/CodeTalker ``cal_metric.py``: ``np.max(np.sum(np.square(gt - pred), 2), 1)``,
  mean over frames pooled across sequences);
* **mean vertex error**: mean over vertices and frames of |p_tv - g_tv| (mm);
* **lip-sync** (Imitator, "Lip-Sync"): dynamic time warping between the predicted and ground-truth
  lip-opening curves, the distance between the upper and lower lip centre per frame (mm; the
  reference uses the FLAME landmarks at the upper/lower lip midpoints). Reported as the total DTW
  cost (sum of |a_i - b_j| along the optimal path, what dtw libraries return) and per path step;
  averaged over sequences;
* **FDD**, upper-face dynamics deviation (CodeTalker): for each upper-face vertex the standard
  deviation over time of its squared displacement from the template, averaged over those vertices;
  FDD = that of the ground truth minus that of the prediction (signed; m^2, reported x 1e-7),
  averaged over sequences;
* **bilabial closure rate**: the share of m/b/p intervals in which the lip centres come within
  1 mm of each other at some frame (the interval's frames, or the frame nearest its middle when
  it is shorter than a frame); the same rate of the ground truth is reported as a check of the data.

``evaluate`` runs a model over a corpus split and returns these numbers; ``python -m core evaluate``
prints them as a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bilabial import Interval, interval_frames
from ..errors import ImitatorError

log = logging.getLogger(__name__)

__all__ = ["FaceRegions", "lip_max_distance", "lip_max_squared_distance", "mean_vertex_distance",
           "lip_opening", "animation_lip_opening", "dtw", "upper_face_dynamics", "fdd", "closures_reached", "MetricSums",
           "evaluate", "format_table", "add_commands"]

CLOSED_GAP_M = 1e-3  # lips "meet": centre gap below 1 mm
OPEN_GAP_M = 2e-3  # lips clearly apart: a closure there is a false one
# Regions counted as the upper face: FLAME_masks.pkl names and the default head's names.
UPPER_FACE_REGIONS = ("forehead", "eye_region", "brow_left", "brow_right", "eyelid_left", "eyelid_right")


# --------------------------------------------------------------------------- regions

@dataclass
class FaceRegions:
    """Vertex sets the metrics need: lips (required), the upper face (FDD), the lip centres
    (lip-sync and closure rate)."""

    lips: np.ndarray
    upper_face: np.ndarray | None = None
    lip_centres: tuple[int, int] | None = None

    @classmethod
    def from_regions(cls, regions: dict[str, np.ndarray], name: str = "head") -> "FaceRegions":
        if "lips" in regions:
            lips = np.asarray(regions["lips"])
        elif "upper_lip" in regions and "lower_lip" in regions:
            lips = np.union1d(regions["upper_lip"], regions["lower_lip"])
        else:
            raise ImitatorError(f"{name} has no lip region; pass the lip vertices with --lip-mask")
        parts = [np.asarray(regions[r]) for r in UPPER_FACE_REGIONS if r in regions]
        upper = np.unique(np.concatenate(parts)) if parts else None
        centres = None
        if "upper_lip_centre" in regions and "lower_lip_centre" in regions:
            centres = (int(np.asarray(regions["upper_lip_centre"]).reshape(-1)[0]),
                       int(np.asarray(regions["lower_lip_centre"]).reshape(-1)[0]))
        return cls(lips.astype(np.int64), None if upper is None else upper.astype(np.int64), centres)

    @classmethod
    def from_head(cls, head) -> "FaceRegions":
        """Regions of a ``core.faces.head.Head`` (the default head has all three)."""
        regions = cls.from_regions(head.regions, f"head '{head.name}'")
        if regions.lip_centres is None and "upper_lip" in head.regions:
            from ..data.visemes import lip_centres

            regions.lip_centres = lip_centres(head)
        return regions

    def check(self, num_vertices: int, where: str = "regions") -> "FaceRegions":
        for name, idx in (("lips", self.lips), ("upper face", self.upper_face),
                          ("lip centres", None if self.lip_centres is None else np.array(self.lip_centres))):
            if idx is None:
                continue
            if idx.size == 0:
                raise ImitatorError(f"{where}: the {name} vertex set is empty")
            if idx.min() < 0 or idx.max() >= num_vertices:
                raise ImitatorError(f"{where}: {name} index {int(idx.max())} is out of range for a "
                                    f"mesh of {num_vertices} vertices (wrong topology?)")
        return self


# --------------------------------------------------------------------------- per-sequence metrics

def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[1:] != gt.shape[1:] or pred.shape[2] != 3:
        raise ImitatorError(f"prediction {pred.shape} and ground truth {gt.shape} must be (T, V, 3) "
                            f"on the same mesh")
    T = min(len(pred), len(gt))  # one frame of rounding between audio and motion is usual
    return pred[:T], gt[:T]


def lip_max_squared_distance(pred: np.ndarray, gt: np.ndarray, lips: np.ndarray) -> np.ndarray:
    """(T,) max over lip vertices of the squared distance (units^2): VOCASET's LVE per frame."""
    pred, gt = _pair(pred, gt)
    d = pred[:, lips] - gt[:, lips]
    return np.einsum("tvc,tvc->tv", d, d).max(axis=1)


def lip_max_distance(pred: np.ndarray, gt: np.ndarray, lips: np.ndarray) -> np.ndarray:
    """(T,) max over lip vertices of the L2 distance: the lip vertex error per frame."""
    return np.sqrt(lip_max_squared_distance(pred, gt, lips))


def mean_vertex_distance(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(T,) mean over all vertices of the L2 distance."""
    pred, gt = _pair(pred, gt)
    return np.linalg.norm(pred - gt, axis=2).mean(axis=1)


def lip_opening(vertices: np.ndarray, centres: tuple[int, int]) -> np.ndarray:
    """(T,) distance between the upper and lower lip centre vertices."""
    v = np.asarray(vertices, dtype=np.float64)
    return np.linalg.norm(v[:, centres[0]] - v[:, centres[1]], axis=1)


def animation_lip_opening(anim, centres: tuple[int, int]) -> np.ndarray:
    """(T,) ``lip_opening`` of an Animation from its basis weights, without expanding the
    vertices (an hour at 30 fps would be 108,000 x V x 3)."""
    u, l = centres
    g0 = (anim.template[u] + anim.bias[u] - anim.template[l] - anim.bias[l]).astype(np.float64)
    A = (anim.basis[:, u] - anim.basis[:, l]).astype(np.float64)  # (K, 3)
    return np.linalg.norm(anim.weights.astype(np.float64) @ A + g0, axis=1)


def dtw(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Dynamic time warping of two 1-D curves, cost |a_i - b_j|, steps (1,0), (0,1), (1,1).

    Returns the total cost of the optimal path and the path's number of cells.
    """
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if not len(a) or not len(b):
        raise ImitatorError("dtw needs two non-empty curves")
    cost = np.abs(a[:, None] - b[None, :])  # (n, m)
    acc = np.empty_like(cost)
    acc[0] = np.cumsum(cost[0])
    for i in range(1, len(a)):
        # acc[i, j] = cost[i, j] + min(acc[i-1, j], acc[i-1, j-1], acc[i, j-1]); the last term is
        # a running minimum: acc[i, j] = S[j] + min_{k<=j}(step[k] - S[k]), S = cumsum(cost[i]).
        diag = np.concatenate([[np.inf], acc[i - 1, :-1]])
        step = cost[i] + np.minimum(acc[i - 1], diag)
        s = np.cumsum(cost[i])
        acc[i] = s + np.minimum.accumulate(step - s)
    i, j, n = len(a) - 1, len(b) - 1, 1
    while i > 0 or j > 0:  # walk back along the path to count its cells
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            k = int(np.argmin([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]]))
            i, j = (i - 1, j - 1) if k == 0 else (i - 1, j) if k == 1 else (i, j - 1)
        n += 1
    return float(acc[-1, -1]), n


def upper_face_dynamics(vertices: np.ndarray, template: np.ndarray, upper: np.ndarray) -> float:
    """Mean over upper-face vertices of the std over time of |x_tv - template_v|^2 (units^2)."""
    d = np.asarray(vertices, dtype=np.float64)[:, upper] - np.asarray(template, dtype=np.float64)[upper]
    return float(np.einsum("tvc,tvc->tv", d, d).std(axis=0).mean())


def fdd(pred: np.ndarray, gt: np.ndarray, template: np.ndarray, upper: np.ndarray) -> float:
    """Upper-face dynamics deviation of one sequence: dynamics of gt minus those of pred."""
    pred, gt = _pair(pred, gt)
    return upper_face_dynamics(gt, template, upper) - upper_face_dynamics(pred, template, upper)


def closures_reached(vertices: np.ndarray, intervals: Sequence[Interval], centres: tuple[int, int],
                     fps: float, threshold: float = CLOSED_GAP_M) -> np.ndarray:
    """(n,) bool per interval inside the clip: the lip-centre gap drops below ``threshold`` at one
    of its frames. Intervals outside the clip are left out."""
    gap = lip_opening(vertices, centres)
    out = []
    for iv in intervals:
        frames = interval_frames(iv, fps, len(gap))
        if frames.size:
            out.append(bool(gap[frames].min() < threshold))
    return np.array(out, dtype=bool)


# --------------------------------------------------------------------------- aggregation

@dataclass
class MetricSums:
    """Running sums over sequences; ``result`` gives the pooled numbers (frames pooled for the
    vertex errors, sequences averaged for lip-sync and FDD, intervals pooled for closures)."""

    regions: FaceRegions
    fps: float
    threshold: float = CLOSED_GAP_M
    frames: int = 0
    sequences: int = 0
    lve_m: float = 0.0
    lve_sq_m2: float = 0.0
    mve_m: float = 0.0
    dtw_total_mm: list[float] = field(default_factory=list)
    dtw_step_mm: list[float] = field(default_factory=list)
    fdd_m2: list[float] = field(default_factory=list)
    closed: int = 0
    closed_gt: int = 0
    intervals: int = 0
    open_frames: int = 0  # frames where the ground truth's lips are apart (> 2 mm)
    false_closures: int = 0  # ... and the prediction's meet (< 1 mm)

    def add(self, pred: np.ndarray, gt: np.ndarray, template: np.ndarray,
            intervals: Sequence[Interval] | None = None) -> dict[str, float]:
        """Add one sequence; returns its own numbers."""
        pred, gt = _pair(pred, gt)
        r = self.regions
        sq = lip_max_squared_distance(pred, gt, r.lips)
        mve = mean_vertex_distance(pred, gt)
        self.frames += len(sq)
        self.sequences += 1
        self.lve_m += float(np.sqrt(sq).sum())
        self.lve_sq_m2 += float(sq.sum())
        self.mve_m += float(mve.sum())
        own = {"frames": len(sq), "lip_vertex_error_mm": 1e3 * float(np.sqrt(sq).mean()),
               "mean_vertex_error_mm": 1e3 * float(mve.mean())}
        if r.lip_centres is not None:
            gap_pred, gap_gt = lip_opening(pred, r.lip_centres), lip_opening(gt, r.lip_centres)
            apart = gap_gt > OPEN_GAP_M
            self.open_frames += int(apart.sum())
            self.false_closures += int((apart & (gap_pred < self.threshold)).sum())
            total, steps = dtw(1e3 * gap_pred, 1e3 * gap_gt)
            self.dtw_total_mm.append(total)
            self.dtw_step_mm.append(total / steps)
            own["lip_sync_dtw_mm"] = total
            if intervals is not None:
                hit = closures_reached(pred, intervals, r.lip_centres, self.fps, self.threshold)
                hit_gt = closures_reached(gt, intervals, r.lip_centres, self.fps, self.threshold)
                self.closed += int(hit.sum())
                self.closed_gt += int(hit_gt.sum())
                self.intervals += len(hit)
                own["bilabials"], own["bilabials_closed"] = len(hit), int(hit.sum())
        if r.upper_face is not None:
            value = fdd(pred, gt, template, r.upper_face)
            self.fdd_m2.append(value)
            own["fdd_x1e-7"] = value / 1e-7
        return own

    def result(self) -> dict[str, float | int | None]:
        n = max(self.frames, 1)

        def mean(values: list[float]) -> float | None:
            return float(np.mean(values)) if values else None

        fdd_m2 = mean(self.fdd_m2)
        return {
            "sequences": self.sequences,
            "frames": self.frames,
            "lip_vertex_error_mm": 1e3 * self.lve_m / n if self.frames else None,
            "lip_vertex_error_sq_x1e-5": self.lve_sq_m2 / n / 1e-5 if self.frames else None,
            "mean_vertex_error_mm": 1e3 * self.mve_m / n if self.frames else None,
            "lip_sync_dtw_mm": mean(self.dtw_total_mm),
            "lip_sync_dtw_per_step_mm": mean(self.dtw_step_mm),
            "fdd_x1e-7": None if fdd_m2 is None else fdd_m2 / 1e-7,
            "bilabial_intervals": self.intervals,
            "bilabial_closure_rate": self.closed / self.intervals if self.intervals else None,
            "gt_bilabial_closure_rate": self.closed_gt / self.intervals if self.intervals else None,
            "false_closure_rate": self.false_closures / self.open_frames if self.open_frames else None,
        }


ROWS = (  # (key, label, format)
    ("lip_vertex_error_mm", "lip vertex error (mm, max L2 over lips)", "{:.4f}"),
    ("lip_vertex_error_sq_x1e-5", "lip vertex error (x1e-5 m^2, VOCASET convention)", "{:.4f}"),
    ("mean_vertex_error_mm", "mean vertex error (mm)", "{:.4f}"),
    ("lip_sync_dtw_mm", "lip-sync DTW of lip opening (mm, total)", "{:.3f}"),
    ("lip_sync_dtw_per_step_mm", "lip-sync DTW per path step (mm)", "{:.4f}"),
    ("fdd_x1e-7", "FDD upper-face dynamics deviation (x1e-7 m^2)", "{:.4f}"),
    ("bilabial_closure_rate", "bilabial closure rate (gap < 1 mm)", "{:.1%}"),
    ("gt_bilabial_closure_rate", "  same, ground truth", "{:.1%}"),
    ("false_closure_rate", "false closures (lips < 1 mm where the data has > 2 mm)", "{:.2%}"),
    ("bilabial_intervals", "m/b/p intervals", "{}"),
    ("sequences", "sequences (utterance x style)", "{}"),
    ("frames", "frames", "{}"),
)


def format_table(result: dict) -> str:
    width = max(len(label) for _, label, _ in ROWS)
    lines = []
    for key, label, fmt in ROWS:
        value = result.get(key)
        lines.append(f"  {label:<{width}}  {'n/a' if value is None else fmt.format(value)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- a model over a corpus

def _styles_for(model, subject: str, style: str | int | None, max_styles: int | None = None) -> list[int | str]:
    """Style indices to generate a subject with: the given one (``mean``: the mean style, as Generate
    without a profile), the subject's own, or all (unseen subjects, as FaceFormer/CodeTalker evaluate
    them; at most ``max_styles`` evenly spread ones)."""
    from ..model.imitator import is_mean_style

    names = model.config.styles
    every = list(range(len(names)))
    if max_styles and len(every) > max_styles:
        every = np.unique(np.linspace(0, len(names) - 1, max_styles).round().astype(int)).tolist()
    if style == "all":
        return every
    if is_mean_style(style, names):
        return [style]
    if style is not None:
        if isinstance(style, int) or str(style).isdigit():
            return [int(style)]
        return [model.style_index(str(style))]
    return [names.index(subject)] if subject in names else every


def predict_vertices(model, audio: np.ndarray, styles: list[int | str], num_frames: int,
                     template: np.ndarray, lip_closure: bool = True) -> np.ndarray:
    """(S, T, V, 3) vertices for 16 kHz ``audio`` in each style, as ``generate`` makes them
    (closure-aware decoding when the model has it and ``lip_closure``; without the rest-in-silence
    correction, which the real-speech benchmark measures); the viseme features are decoded once
    for all styles when the clip fits the model's window."""
    import torch

    from ..model.generate import generate, to_animation

    device = next(model.parameters()).device
    if num_frames > model.config.window:
        return np.stack([generate(model, audio, model.config.sample_rate, s, template=template,
                                  lip_closure=lip_closure, rest=False).vertices()[:num_frames]
                         for s in styles])
    with torch.no_grad():
        a = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(device)[None]
        feats = model.audio_features(a, num_frames)
        visemes = model.viseme_features(feats)
        contact = model.contact(visemes, feats, model.audio_contact(a, num_frames)) if lip_closure else None
        contact = None if contact is None else contact[0].float().cpu().numpy()
        weights = model.motion_weights(visemes.expand(len(styles), -1, -1),
                                       torch.cat([model.style_vector(s) for s in styles]))
    weights = weights.float().cpu().numpy()
    return np.stack([to_animation(model, w, template, contact=contact).vertices() for w in weights])


def split_utterances(corpus, split: str, limit: int | None = None, strangers_of=None) -> list:
    """The utterances ``evaluate`` scores: the split's first ``limit`` (all without one); with
    ``strangers_of`` (a model), only subjects that model was never trained on, ``limit`` of their
    utterances evenly spread over the split (so every such subject is in)."""
    if split not in corpus.splits:
        raise ImitatorError(f"unknown split '{split}'; choose one of {', '.join(corpus.splits)}")
    utterances = corpus.splits[split]
    if strangers_of is None:
        return utterances[:limit] if limit else utterances
    known = set(strangers_of.config.styles)
    utterances = [u for u in utterances if u.subject not in known]
    if limit and len(utterances) > limit:
        pick = np.unique(np.linspace(0, len(utterances) - 1, limit).round().astype(int))
        utterances = [utterances[i] for i in pick]
    return utterances


def evaluate(model, corpus, split: str, regions: FaceRegions, *, style: str | int | None = None,
             closures: dict[str, list[Interval]] | None = None, limit: int | None = None,
             progress: bool = False, lip_closure: bool = True, max_styles: int | None = None,
             strangers: bool = False) -> tuple[dict, list[dict]]:
    """Run ``model`` over a corpus split (``split_utterances``); (pooled metrics, one record per
    utterance and style)."""
    from tqdm import tqdm

    utterances = split_utterances(corpus, split, limit, model if strangers else None)
    if not utterances:
        who = " of subjects the model was never trained on" if strangers else ""
        raise ImitatorError(f"{corpus.root}: the {split} split has no utterances{who}; nothing to evaluate")
    if corpus.num_vertices != model.config.num_vertices:
        raise ImitatorError(f"{corpus.root}: the corpus has {corpus.num_vertices} vertices, the model "
                            f"{model.config.num_vertices}; evaluate a model trained on this topology")
    regions.check(corpus.num_vertices)
    model.eval()
    fps = model.config.fps
    sums = MetricSums(regions, fps)
    records = []
    for utt in tqdm(utterances, desc=f"evaluate {split}", unit="utt", disable=not progress):
        gt = corpus.read_vertices(utt, fps)
        audio = corpus.read_audio(utt, model.config.sample_rate)
        template = corpus.templates[utt.subject]
        styles = _styles_for(model, utt.subject, style, max_styles)
        preds = predict_vertices(model, audio, styles, len(gt), template, lip_closure)
        for s, pred in zip(styles, preds):
            own = sums.add(pred, gt, template, None if closures is None else closures.get(utt.key))
            name = s if isinstance(s, str) else model.config.styles[s]
            records.append({"utterance": utt.key, "style": name, **own})
    return sums.result(), records


# --------------------------------------------------------------------------- command line

def add_commands(sub: argparse._SubParsersAction) -> None:
    """``python -m core evaluate --model M --data DIR [--split test] [--out metrics.json]``."""
    from ..data.commands import DEFAULT_HEAD_CACHE as DEFAULT_CACHE

    p = sub.add_parser("evaluate", help="lip vertex error, lip-sync, FDD and closure rate of a model on a "
                                        "dataset split", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="model folder (config.json + model.safetensors)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (processed-VOCASET layout)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--out", type=Path, help="write the metrics and per-utterance numbers here (JSON)")
    p.add_argument("--style", help="style name or index for every utterance, mean, or 'all'; default: the "
                                   "subject's own style, all styles (averaged) for unseen subjects")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--lip-mask", type=Path, help="lip vertex indices (.npy, .json or whitespace/comma text)")
    p.add_argument("--upper-mask", type=Path, help="upper-face vertex indices for FDD (same formats)")
    p.add_argument("--lip-centres", help="'U,L': upper and lower lip centre vertex indices")
    p.add_argument("--flame-masks", type=Path, help="FLAME_masks.pkl for a FLAME-topology dataset")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help=f"default head and closure cache folder (default {DEFAULT_CACHE})")
    p.add_argument("--limit", type=int, help="evaluate the first N utterances only")
    p.add_argument("--strangers", action="store_true",
                   help="only subjects the model was never trained on; --limit N spreads N utterances "
                        "over all of them (a val split scored like the test split)")
    p.add_argument("--max-styles", type=int, help="subjects never trained on: at most N evenly spread training "
                                                  "styles (default: every style)")
    p.add_argument("--no-lip-closure", dest="lip_closure", action="store_false",
                   help="score the raw model output, without closure-aware decoding")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.set_defaults(func=_run)


def read_indices(path: Path) -> np.ndarray:
    """Vertex indices from .npy, .json (a list) or text (numbers separated by spaces/commas)."""
    try:
        if path.suffix == ".npy":
            idx = np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            idx = np.asarray(json.loads(path.read_text()))
        else:
            idx = np.asarray(path.read_text().replace(",", " ").split(), dtype=np.int64)
    except (OSError, ValueError) as e:
        raise ImitatorError(f"{path}: unreadable vertex index list ({e}); give .npy, .json or text") from None
    idx = np.asarray(idx).reshape(-1)
    if idx.dtype.kind not in "iu" and not (idx.dtype.kind == "f" and np.all(idx == np.round(idx))):
        raise ImitatorError(f"{path}: vertex indices must be integers")
    return idx.astype(np.int64)


def resolve_regions(corpus, args: argparse.Namespace) -> FaceRegions:
    """Lip/upper-face/centre vertices: masks given on the command line, else the default head's
    regions when the corpus is on its topology, else FLAME masks."""
    if args.lip_mask is not None:
        centres = None
        if args.lip_centres:
            try:
                u, lo = (int(x) for x in args.lip_centres.split(","))
            except ValueError:
                raise ImitatorError(f"--lip-centres {args.lip_centres!r}: give two vertex indices 'U,L'") \
                    from None
            centres = (u, lo)
        upper = read_indices(args.upper_mask) if args.upper_mask is not None else None
        return FaceRegions(read_indices(args.lip_mask), upper, centres)
    if args.flame_masks is not None:
        from ..faces.flame import load_flame_masks

        return FaceRegions.from_regions(load_flame_masks(args.flame_masks, corpus.num_vertices),
                                        str(args.flame_masks))
    topology = str(corpus.info.get("topology", ""))
    from ..faces.default_head import load_default_head

    try:
        head = load_default_head(args.cache_dir)
    except ImitatorError as e:
        raise ImitatorError(f"{corpus.root}: no lip vertices given and the default head is unavailable "
                            f"({e}); pass --lip-mask (and --upper-mask, --lip-centres)") from None
    if head.num_vertices == corpus.num_vertices and topology in ("", head.topology):
        return FaceRegions.from_head(head)
    raise ImitatorError(f"{corpus.root}: the dataset's mesh ({corpus.num_vertices} vertices) is not the "
                        f"default head; pass --flame-masks FLAME_masks.pkl for FLAME, or --lip-mask")


def _run(args: argparse.Namespace) -> int:
    import hashlib

    import torch

    from ..data.closure_labels import corpus_closures
    from ..data.vocaset import open_corpus
    from ..fileio import atomic_write
    from ..model.checkpoint import from_pretrained
    from ..device import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    corpus = open_corpus(args.data)
    regions = resolve_regions(corpus, args).check(corpus.num_vertices, "lip/upper-face masks")
    model = from_pretrained(args.model, device, topology=str(corpus.info.get("topology", "")) or None)
    utterances = split_utterances(corpus, args.split, args.limit, model if args.strangers else None)
    closures = None
    if regions.lip_centres is not None:
        tag = hashlib.sha1(str(corpus.root.resolve()).encode()).hexdigest()[:12]
        try:
            closures = corpus_closures(corpus, utterances, args.cache_dir / f"closures-{tag}.json",
                                       progress=True)
        except ImitatorError as e:
            log.warning("bilabial closure rate left out: %s", e)
    t0 = time.perf_counter()
    style = args.style
    result, records = evaluate(model, corpus, args.split, regions, style=style, closures=closures,
                               limit=args.limit, progress=True, lip_closure=args.lip_closure,
                               max_styles=args.max_styles, strangers=args.strangers)
    seconds = time.perf_counter() - t0
    print(f"{args.model} on {args.data} ({args.split}, {result['sequences']} sequences, {seconds:.1f} s)")
    print(format_table(result))
    if args.out is not None:
        payload = {"model": str(args.model), "data": str(args.data), "split": args.split,
                   "style": style or "own (all for unseen subjects)", "metrics": result,
                   "lip_closure": bool(args.lip_closure and model.closure is not None),
                   "seconds": round(seconds, 2), "utterances": records}
        with atomic_write(args.out) as f:
            f.write(json.dumps(payload, indent=1).encode())
        print(f"wrote {args.out}")
    return 0
