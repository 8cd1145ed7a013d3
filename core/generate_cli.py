"""``python -m core generate``: speech audio -> Animation npz, optionally an OBJ sequence and an ARKit CSV.

    python -m core generate --audio speech.wav [--model models/default] [--style NAME|INDEX|mean|FILE.imstyle]
                            [--fps 24] [--device auto] --out anim.npz
                            [--obj-dir frames/] [--arkit-csv take.csv]
                            [--text "..." | --text-file script.txt] [--plot lips.png] [--video take.mp4]

The npz is the exact Animation (template + bias + weights @ basis: the motion decoder's last
layer), written atomically; ``--obj-dir`` writes one OBJ per frame (faces from the default head when
the model is on its topology) plus the audio; ``--arkit-csv`` fits the 52 ARKit weights of the
default head per frame and writes a Live Link Face CSV. A transcript (``--text``, ``--text-file``,
or ``speech.txt`` beside ``speech.wav``) pins the lip closures of m/b/p (``core.transcript``);
where nobody speaks the face rests (``--no-rest`` keeps the raw motion). ``--plot`` draws the lip
gap over the speech envelope, ``--video`` renders the default head (front + lip close-up) with
the audio.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from .errors import ImitatorError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "default_model_path", "parse_style", "add_commands"]

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"


def default_model_path() -> Path:
    """``models/default`` of the repository, or a one-line error saying how to get a model."""
    if (DEFAULT_MODEL / "config.json").is_file():
        return DEFAULT_MODEL
    raise ImitatorError(f"no --model given and {DEFAULT_MODEL} holds no model; pass --model FOLDER "
                        f"(train one with `python -m core train`)")


def parse_style(model, text: str | None):
    """A style name of the model, its index, ``mean`` (the mean of its styles) or an adapted profile
    (``*.imstyle``, checked against the model); None: the mean style."""
    from .model.imitator import MEAN_STYLE, is_mean_style

    if text is None or is_mean_style(text, model.config.styles):
        return MEAN_STYLE
    if text.endswith(".imstyle"):
        from .style.profile import load_style_profile

        return load_style_profile(Path(text), model)
    if text.isdigit():
        index = int(text)
        if index >= model.config.num_styles:
            raise ImitatorError(f"style index {index} is out of range; the model has "
                                f"{model.config.num_styles} styles: {', '.join(model.config.styles)}")
        return index
    model.style_index(text)  # one-line error naming the known styles
    return text


def add_commands(sub: argparse._SubParsersAction) -> None:
    from .data.commands import DEFAULT_HEAD_CACHE

    p = sub.add_parser("generate", help="speech audio -> facial animation (npz, OBJ frames, ARKit CSV)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--audio", type=Path, required=True, help="speech audio file (any rate, channels, length)")
    p.add_argument("--model", type=Path, help=f"model folder (default {DEFAULT_MODEL})")
    p.add_argument("--style", help="style name or index, mean, or a profile from `adapt` (NAME.imstyle) "
                                   "(default: mean, the mean of the training styles)")
    p.add_argument("--fps", type=float, help="output frame rate (default: the model's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--method", choices=("rolling", "crossfade"), help="long-audio method (default: the model's)")
    p.add_argument("--out", type=Path, required=True, help="Animation .npz to write")
    p.add_argument("--obj-dir", type=Path, help="also write an OBJ sequence (+ audio.wav) into this new folder")
    p.add_argument("--arkit-csv", type=Path, help="also write ARKit weights (default head) as a Live Link Face CSV")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (--out, --obj-dir, --arkit-csv)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_HEAD_CACHE,
                   help=f"where the default head is cached (default {DEFAULT_HEAD_CACHE})")
    p.add_argument("--head", type=Path, help="animate this head instead (HEAD.obj of any topology, or HEAD.imfit "
                                            "from fit-head): npz and OBJ frames on its topology")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--no-lip-closure", dest="lip_closure", action="store_false",
                   help="skip closure-aware decoding (lips pressed together on m/b/p): the raw model output")
    p.add_argument("--no-rest", dest="rest", action="store_false",
                   help="keep the model's motion where nobody speaks (default: the face rests in silence)")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="what is said (dialog text): m/b/p are aligned to it and the lips "
                                     "close there (default: AUDIO.txt beside the audio, if any)")
    text.add_argument("--text-file", type=Path, help="the same from a plain-text file")
    p.add_argument("--plot", type=Path, help="also draw lip gap, speech envelope and m/b/p over time (PNG)")
    p.add_argument("--video", type=Path, help="also render the default head with the audio (mp4: front "
                                              "view + lip close-up)")
    # checked by core.cli before anything runs (exists, folder/file, writable, not an input)
    p.set_defaults(func=_run, outputs={"out": "file:.npz", "obj_dir": "sequence", "arkit_csv": "file:.csv",
                                       "plot": "file:.png", "video": "file:.mp4"})


def _head_for(model, cache_dir: Path, required: bool):
    """The default head when the model animates its topology; None (or an error if ``required``)."""
    from .faces.default_head import load_default_head

    try:
        head = load_default_head(cache_dir)
    except ImitatorError as e:
        if required:
            raise
        log.warning("OBJ frames without faces: the default head is unavailable (%s)", e)
        return None
    same = head.num_vertices == model.config.num_vertices and model.config.topology in ("", head.topology)
    if not same:
        if required:
            raise ImitatorError(f"ARKit weights need a model of the default head; this model animates "
                                f"{model.config.num_vertices} vertices (topology "
                                f"{model.config.topology or 'unrecorded'})")
        return None
    return head


def _run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from .audio import check_audio
    from .model.checkpoint import from_pretrained
    from .model.generate import generate_file
    from .device import pick_device

    check_audio(args.audio)  # before the model loads (outputs and options: core.cli)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.model if args.model is not None else default_model_path()
    model = from_pretrained(folder, pick_device(args.device))
    style = parse_style(model, args.style)
    arkit_head = _head_for(model, args.cache_dir, required=True) if args.arkit_csv is not None else None
    video_head = _head_for(model, args.cache_dir, required=True) if args.video is not None else None
    centres = (model.config.lip_closure or {}).get("centres")
    if args.plot is not None and centres is None:
        raise ImitatorError(f"--plot needs the lip centres of closure-aware decoding; {folder} has none")
    closures = _transcript_closures(args) if args.lip_closure else None
    t0 = time.perf_counter()
    with tqdm(desc="generate", unit="frame") as bar:
        def progress(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        anim = generate_file(model, args.audio, style, fps=args.fps, method=args.method, progress=progress,
                             lip_closure=args.lip_closure, rest=args.rest, closures=closures)
    target, model_anim = None, anim  # ARKit weights are solved on the model head
    if args.head is not None:
        from .faces.fit_cli import apply_head

        anim, target = apply_head(args.head, anim, model, args.cache_dir)
    seconds = time.perf_counter() - t0
    if args.arkit_csv is not None:  # fitted before anything is written: a failure leaves no file
        from .arkit_fit import fit_arkit_weights

        weights, error = fit_arkit_weights(model_anim, arkit_head)  # solved on the model head
    anim.save(args.out)
    print(f"wrote {args.out}: {anim.num_frames} frames at {anim.fps:g} fps, {anim.num_vertices} vertices, "
          f"{anim.basis.shape[0]} basis shapes ({seconds:.2f} s, real-time factor "
          f"{seconds / max(anim.duration, 1e-9):.4f})")
    if args.obj_dir is not None:
        from .audio import audio_info, load_audio
        from .data.clips import Clip, save_obj_sequence

        head = target or _head_for(model, args.cache_dir, required=False)
        rate = audio_info(args.audio).sample_rate
        clip = Clip(vertices=anim.vertices().astype("float32"), fps=anim.fps,
                    audio=load_audio(args.audio, rate), sample_rate=rate, source=args.audio)
        save_obj_sequence(args.obj_dir, clip, head, overwrite=args.overwrite)
        print(f"wrote {args.obj_dir}: {anim.num_frames} OBJ frames{'' if head else ' (vertices only)'} + audio.wav")
    if args.arkit_csv is not None:
        from .data.clips import save_arkit_csv

        save_arkit_csv(args.arkit_csv, weights, anim.fps)
        print(f"wrote {args.arkit_csv}: 52 ARKit weights x {len(weights)} frames (largest vertex error of "
              f"the fit {error * 1000:.2f} mm)")
    if args.plot is not None:  # plot and video show the model head
        from .plot import plot_animation

        plot_animation(args.plot, model_anim, args.audio, tuple(centres), closures or ())
        print(f"wrote {args.plot}")
    if args.video is not None:
        from .data.preview import head_colors
        from .render import render_preview

        render_preview(model_anim.vertices(), video_head.triangles(), anim.fps, args.video, audio_path=args.audio,
                       mouth=video_head.regions.get("lips"), colors=head_colors(video_head))
    return 0


def _transcript_closures(args: argparse.Namespace):
    """m/b/p aligned to --text / --text-file / AUDIO.txt; None without one or when it does not fit."""
    from .transcript import resolve_transcript

    closures, note = resolve_transcript(args.audio, args.text, args.text_file)
    if note is not None:
        (print if closures is not None else log.warning)(note)
    return closures
