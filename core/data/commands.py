"""CLI: ``python -m core dataset synth --out DIR [--subjects N --utterances M --seed S]``."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_HEAD_CACHE = Path.home() / ".cache" / "imitator"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dataset`` command and its ``synth`` subcommand."""
    dataset = subparsers.add_parser("dataset", help="build or inspect training corpora")
    sub = dataset.add_subparsers(dest="dataset_command", required=True)
    p = sub.add_parser(
        "synth", help="generate the synthetic talking-head corpus (TTS + coarticulated motion)",
        description="Generate the synthetic corpus on the default head in the processed-VOCASET "
                    "layout (wav/, arkit/, shape_keys.npy, templates.pkl, dataset.json; vertices_npy/ with --vertices). The "
                    "default is 12 subjects x 40 utterances; the default model's corpus is the same with "
                    "--utterances 100.")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    p.add_argument("--subjects", type=int, default=12, help="number of subjects (default 12)")
    p.add_argument("--utterances", type=int, default=40,
                   help="utterances per subject (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--engines", default="espeak,festival",
                   help="TTS engines, comma-separated (default espeak,festival)")
    p.add_argument("--vertices", action="store_true",
                   help="also write vertices_npy/ (about 60 kB per frame); by default the corpus is compact: "
                        "arkit/ weights + shape_keys.npy reproduce every frame exactly")
    p.add_argument("--people", action="store_true",
                   help="closer to people: 1-3 sentences per utterance with 0.2-2 s pauses, 0.2-1 s of silence "
                        "around, a noise floor, breaths, and the real recorded prompts (train split) in 3 "
                        "styles each; the options below change single settings")
    p.add_argument("--sentences", type=_range(int), help="sentences per utterance, MIN-MAX (default 1-1)")
    p.add_argument("--pauses", type=_range(float), help="pause between sentences, seconds MIN-MAX")
    p.add_argument("--silence", type=_range(float), help="silence before and after the speech, seconds MIN-MAX")
    p.add_argument("--noise-floor", type=_range(float), help="background noise, dBFS MIN-MAX (e.g. -70--45)")
    p.add_argument("--real-styles", type=int, help="animate each real recorded prompt (Debian's "
                   "asterisk-core-sounds-en, train split) in this many styles (0: none)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--head-cache", type=Path, default=DEFAULT_HEAD_CACHE,
                   help=f"default head cache folder (default {DEFAULT_HEAD_CACHE})")
    p.set_defaults(func=_synth)

    from .preview import add_preview_command  # `dataset preview`, same command group

    add_preview_command(sub)


def _range(kind):
    """argparse type: 'MIN-MAX' (or one value) -> (MIN, MAX); negative numbers as in '-70--45'."""
    def parse(text: str) -> tuple:
        import re

        m = re.fullmatch(r"\s*(-?[\d.]+)\s*(?:-\s*(-?[\d.]+))?\s*", text)
        if not m:
            raise argparse.ArgumentTypeError(f"{text!r} is not MIN-MAX")
        lo, hi = kind(m.group(1)), kind(m.group(2) or m.group(1))
        if hi < lo:
            raise argparse.ArgumentTypeError(f"{text!r}: MIN is above MAX")
        return (lo, hi)
    return parse


def _synth(args: argparse.Namespace) -> int:
    from ..faces.default_head import load_default_head
    from .synth import CorpusConfig, build_corpus

    people = dict(sentences_per_utterance=(1, 3), pause=(0.2, 2.0), edge_silence=(0.2, 1.0),
                  noise_floor_db=(-70.0, -45.0), breath_share=0.5, real_styles=3) if args.people else {}
    given = {"sentences_per_utterance": args.sentences, "pause": args.pauses, "edge_silence": args.silence,
             "noise_floor_db": args.noise_floor, "real_styles": args.real_styles}
    people.update({k: v for k, v in given.items() if v is not None})
    cfg = CorpusConfig(subjects=args.subjects, utterances=args.utterances, seed=args.seed,
                       engines=tuple(e.strip() for e in args.engines.split(",") if e.strip()),
                       vertices=args.vertices, **people)
    head = load_default_head(args.head_cache)
    meta = build_corpus(args.out, cfg, head, jobs=args.jobs, overwrite=args.overwrite)
    s, t = meta["summary"], meta["timing"]
    d = s["style_distance"]
    rows = [
        ("subjects", s["subjects"]), ("utterances", s["utterances"]),
        ("hours of audio", s["hours"]), ("frames (60 fps)", s["frames"]),
        ("voices used", s["voices"]), ("m/b/p phones", s["bilabial_phones"]),
        ("utterances of real recordings", s.get("real_recordings", 0)),
        ("max lip gap at m/b/p frames (mm)", s["closure_gap_max_mm"]),
        ("LVE between subjects (mm)", d["lve_between_subjects_mm"]),
        ("LVE between subjects, same audio (mm)", d["lve_between_subjects_same_audio_mm"]),
        ("LVE within a subject, 2 renditions (mm)", d["lve_within_subject_mm"]),
        *((f"closure detection P/R, {k.replace('_tol', ', +-')} frame", f"{v['precision']} / {v['recall']}")
          for k, v in s["closure_detection"].items() if isinstance(v, dict)),
        ("generation time (s)", t["seconds"]),
        (f"utterances per minute ({t['jobs']} jobs)", t["utterances_per_minute"]),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"corpus written to {args.out}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    return 0
