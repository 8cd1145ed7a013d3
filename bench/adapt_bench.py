"""Style adaptation on held-out subjects (the paper's Table 1): how much a short reference helps.

    .venv/bin/python -m bench.adapt_bench --model RUN --data CORPUS [--lengths 2.5 5 10 20]
                                          [--steps1 300 --steps2 300] [--threads 2] [--seed 0]

For every test subject of the corpus (never trained on), the reference is cut from their
train-sentence utterances (seeded order, concatenated, exactly L seconds) and the model is adapted
to it: stage 1 alone (style vector) and stages 1+2 (+ the motion decoder's final layer). Each
profile, and the generic model (the mean of the training styles), then speaks the subject's
test-sentence utterances (sentences no one was trained on); lip vertex error, mean vertex error and
the m/b/p closure rate are pooled over subjects (``core.evaluate.metrics.MetricSums``). Closures for the lip
contact loss come from the corpus's phone timings; a separate timing row adapts a 10 s reference
the way a user's clip is adapted (closures recognized in the audio, all stages), on ``--threads``.

A floor row puts the result in context: the training subjects' val sentences in their own trained
style vs the mean style, i.e. what a perfect style fit could reach with this model (a second one
on sentences they were trained on: how well the model fits its own data). An oracle row
(synthetic corpora only) asks the same of the corpus's own motion generator, given the true phone
timings: the subject's true style (averaged over the generator's random jitter) vs no particular
style (averaged over random styles). Its ratio is the best any audio model could adapt to; the gap
between the two rows is the audio model's error, not the adaptation's. A self-fit row bounds the
method from the other side: stages 1+2 fitted on the very utterances that are scored (all of
them, no held-out tail), which no reference clip of other sentences can beat by much.

Use a corpus with many held-out subjects (style distances to the mean vary a lot between people),
e.g. the shipped model's own corpus (16 test subjects; the command is in models/default/MODEL_CARD.md):
``python -m core dataset synth --out data/corpus_v03 --subjects 96 --utterances 24 --people --seed 0``.

Acceptance (issue 6): with 5 s of reference, adapted LVE <= 0.6 x the generic model's; mean vertex
error and closure rate no worse; a 10 s clip adapts in <= 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.common import report
from core.style.adapt import AdaptSettings, adapt
from core.data.clips import Clip, resample_frames
from core.data.closure_labels import closure_mask, utterance_closures
from core.data.styles import Style, sample_style
from core.data.visemes import LipContact, MotionConfig, arkit_weights
from core.faces.default_head import load_default_head
from core.data.vocaset import open_corpus
from core.evaluate.metrics import MetricSums, resolve_regions
from core.model.checkpoint import from_pretrained
from core.model.closure import close_lips
from core.style.profile import StyleProfile, model_hash


SELF_FIT = ("scored utterances", "stages 1+2 fitted on them (bound)")


@dataclass
class TestUtterance:
    key: str
    visemes: torch.Tensor  # (T, d), computed once: every style reuses them
    target: np.ndarray  # (T, V, 3)
    template: np.ndarray
    intervals: list
    contact: np.ndarray | None  # (T,) closed-lip probability (closure-aware decoding), None without


def sentence_sets(corpus, subject: str, held_out: tuple[str, ...] = ("test",)) -> tuple[list, list]:
    """(train-sentence, held-out-sentence) utterances of a subject: dataset.json's sentence splits
    (``held_out`` names the pools scored on), else the first and second half of its utterances."""
    mine = sorted((u for u in corpus.utterances if u.subject == subject), key=lambda u: u.sentence)
    pools = corpus.info.get("sentence_splits")
    if isinstance(pools, dict) and pools.get("train") and pools.get("test"):
        train = set(pools["train"])
        test = set().union(*(pools.get(name, []) for name in held_out))
        return [u for u in mine if u.sentence in train], [u for u in mine if u.sentence in test]
    half = len(mine) // 2
    return mine[:half], mine[half:]


def reference_clip(model, corpus, utterances: list, seconds: float, rng: np.random.Generator) -> tuple[Clip, np.ndarray]:
    """The subject's utterances in a seeded order, concatenated and cut to ``seconds``; with the
    closure mask of the corpus's phone timings at the model fps."""
    fps, sr = model.config.fps, model.config.sample_rate
    need = int(round(seconds * fps))
    verts, audio, masks, have = [], [], [], 0
    for i in rng.permutation(len(utterances)):
        utt = utterances[i]
        v = corpus.read_vertices(utt, fps)
        a = corpus.read_audio(utt, sr)
        a = np.pad(a, (0, max(0, int(round(len(v) / fps * sr)) - len(a))))[: int(round(len(v) / fps * sr))]
        verts.append(v)
        audio.append(a)
        masks.append(closure_mask(utterance_closures(utt)[0], fps, len(v)))
        have += len(v)
        if have >= need:
            break
    if have < need:
        raise SystemExit(f"{utterances[0].subject}: only {have / fps:.1f} s of train-sentence speech, "
                         f"{seconds} s asked for")
    v = np.concatenate(verts)[:need]
    a = np.concatenate(audio)[: int(round(need / fps * sr))]
    return Clip(v, fps, a, sr), np.concatenate(masks)[:need]


def test_set(model, corpus, utterances: list) -> list[TestUtterance]:
    fps, sr = model.config.fps, model.config.sample_rate
    out = []
    with torch.no_grad():
        for utt in utterances:
            target = corpus.read_vertices(utt, fps)
            audio = torch.from_numpy(corpus.read_audio(utt, sr))[None]
            feats = model.audio_features(audio, len(target))
            visemes = model.viseme_features(feats)
            contact = model.contact(visemes, feats, model.audio_contact(audio, len(target)))
            out.append(TestUtterance(utt.key, visemes[0], target, corpus.templates[utt.subject],
                                     utterance_closures(utt)[0], None if contact is None else contact[0].numpy()))
    return out


def predict(model, utt: TestUtterance, style: StyleProfile | torch.Tensor) -> np.ndarray:
    """(T, V, 3) vertices in a style: hidden(visemes + style) through the (adapted) final layer,
    lips closed where the model's contact head says so (as ``generate`` does)."""
    vector = torch.from_numpy(style.style) if isinstance(style, StyleProfile) else style
    with torch.no_grad():
        h = model.motion_decoder.hidden((utt.visemes + vector)[None])[0].numpy()  # (T, d)
    if isinstance(style, StyleProfile):
        basis, bias = style.basis(model)
    else:
        basis, bias = (t.detach().numpy() for t in model.basis())
    if utt.contact is not None:
        V = len(utt.template)
        h = close_lips(h, utt.contact, basis.reshape(-1, V, 3), bias.reshape(V, 3), utt.template,
                       model.closure.covariance.numpy(), model.closure.options)
    return utt.template + (h @ basis + bias).reshape(len(h), -1, 3)


def score(model, regions, tests: list[TestUtterance], style, sums: MetricSums | None = None) -> MetricSums:
    sums = sums or MetricSums(regions, model.config.fps)
    for utt in tests:
        sums.add(predict(model, utt, style), utt.target, utt.template, utt.intervals)
    return sums


def own_style_floor(model, corpus, regions, mean_style: torch.Tensor, per_subject: int = 4,
                    split: str = "val") -> dict | None:
    """What a perfect style fit could reach: training subjects' held-out (val) sentences spoken in
    their own trained style vs the mean style. Adaptation recovers a style, not a better audio
    model, so its LVE ratio on new people lands near this one (stage 2 can go a little below).
    ``split`` "train": the utterances they were trained on (how well the model fits its data)."""
    table = model.style_embedding.weight.detach().t()
    own, generic, n = MetricSums(regions, model.config.fps), MetricSums(regions, model.config.fps), 0
    for index, subject in enumerate(model.config.styles):
        utts = [u for u in corpus.splits.get(split, []) if u.subject == subject][:per_subject]
        tests = test_set(model, corpus, utts)
        score(model, regions, tests, table[index], own)
        score(model, regions, tests, mean_style, generic)
        n += len(tests)
    if not n:
        return None
    o, g = own.result()["lip_vertex_error_mm"], generic.result()["lip_vertex_error_mm"]
    return {"utterances": n, "own_style_LVE_mm": o, "mean_style_LVE_mm": g, "LVE_ratio": o / g}


class GeneratorOracle:
    """The corpus generator's best guesses, pooled over the test utterances (synthetic corpora).

    With the phones known, the best prediction of a subject's motion is the generator's mean over
    its random jitter (vowel emphasis, articulation energy) in the subject's style; without the
    style, the mean over random styles too. Motion is linear in the ARKit weights, so both means
    are means of weights."""

    def __init__(self, corpus, regions, fps: float, contact: LipContact, draws: int = 16,
                 styles: int = 32, seed: int = 0):
        info = corpus.info
        self.corpus, self.fps, self.contact, self.draws = corpus, fps, contact, draws
        self.motion = MotionConfig(**info["config"]["motion"])
        self.styles = {name: Style.from_dict(s["style"]) for name, s in info["subjects"].items()}
        self.pool = [sample_style(np.random.default_rng([seed, 11, i])) for i in range(styles)]
        self.seed = seed
        self.own, self.generic = MetricSums(regions, fps), MetricSums(regions, fps)

    @classmethod
    def for_corpus(cls, corpus, regions, fps: float, head) -> GeneratorOracle | None:
        """The oracle of a corpus made by ``dataset synth`` on ``head``; None for any other corpus."""
        info = corpus.info
        synthetic = info.get("format") == "imitator-synthetic-corpus" and corpus.shape_keys is not None
        if not synthetic or "motion" not in info.get("config", {}) or head.topology != info.get("topology"):
            return None
        return cls(corpus, regions, fps, LipContact.from_head(head))

    def mean_weights(self, utt, styles: list[Style], stream: int) -> np.ndarray:
        phones = [tuple(p) for p in utt.phonemes]
        runs = [arkit_weights(phones, float(utt.meta["duration"]), style, self.contact,
                              np.random.default_rng([self.seed, stream, k]), self.motion)
                for k, style in enumerate(styles)]
        return np.mean(runs, axis=0)

    def vertices(self, utt, test: TestUtterance, styles: list[Style], stream: int) -> np.ndarray:
        """(n, V, 3) the mean motion of ``styles`` at the model fps; n: the frames ``test`` has too."""
        w = resample_frames(self.mean_weights(utt, styles, stream).astype(np.float32), self.corpus.fps, self.fps)
        n = min(len(w), len(test.target))
        return test.template + np.einsum("tk,kvc->tvc", w[:n], self.corpus.shape_keys)

    def add(self, utt, test: TestUtterance) -> None:
        for styles, stream, sums in (([self.styles[utt.subject]] * self.draws, 12, self.own),
                                     (self.pool, 13, self.generic)):
            verts = self.vertices(utt, test, styles, stream)
            sums.add(verts, test.target[: len(verts)], test.template, test.intervals)

    def result(self) -> dict:
        o, g = self.own.result()["lip_vertex_error_mm"], self.generic.result()["lip_vertex_error_mm"]
        return {"own_style_LVE_mm": o, "generic_LVE_mm": g, "LVE_ratio": o / g,
                "draws": self.draws, "random_styles": len(self.pool)}


def open_model_and_corpus(model_dir: Path, data: Path, cache_dir: Path):
    """(corpus, its lip/face regions, the model on CPU checked against the corpus's topology)."""
    corpus = open_corpus(data)
    regions = resolve_regions(corpus, argparse.Namespace(lip_mask=None, flame_masks=None,
                                                         cache_dir=cache_dir)).check(corpus.num_vertices)
    model = from_pretrained(model_dir, "cpu", topology=str(corpus.info.get("topology", "")) or None)
    return corpus, regions, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder (config.json + model.safetensors)")
    parser.add_argument("--data", type=Path, required=True, help="corpus folder (the synthetic corpus)")
    parser.add_argument("--lengths", type=float, nargs="+", default=[2.5, 5.0, 10.0, 20.0],
                        help="reference lengths in seconds")
    parser.add_argument("--steps1", type=int, default=AdaptSettings.steps1)
    parser.add_argument("--steps2", type=int, default=AdaptSettings.steps2)
    parser.add_argument("--subjects", type=int, help="use the first N test subjects only")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="held-out subjects to adapt to: test (the acceptance) or val (for tuning settings)")
    parser.add_argument("--init", default=AdaptSettings.init, help="initial style: nearest, mean or a name")
    parser.add_argument("--lr1", type=float, default=AdaptSettings.lr1, help="stage 1 learning rate")
    parser.add_argument("--lr2", type=float, default=AdaptSettings.lr2, help="stage 2 learning rate")
    parser.add_argument("--holdout", type=float, default=AdaptSettings.holdout, help="held-out share of the clip")
    parser.add_argument("--no-gain", action="store_true", help="no least-squares motion gain after stage 1")
    parser.add_argument("--test-utterances", type=int, help="evaluate on at most N utterances per subject")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2: the acceptance setting)")
    parser.add_argument("--seed", type=int, default=0, help="order of the reference utterances")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "imitator",
                        help="default head cache (the lip regions)")
    parser.add_argument("--no-timing", action="store_true", help="skip the user-path timing row")
    parser.add_argument("--no-floor", action="store_true", help="skip the own-style floor rows")
    parser.add_argument("--no-oracle", action="store_true", help="skip the generator-oracle row")
    parser.add_argument("--no-self-fit", action="store_true",
                        help="skip the bound row (adapted on the scored utterances themselves)")
    parser.add_argument("--name", default="adapt", help="results/<name>.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    corpus, regions, model = open_model_and_corpus(args.model, args.data, args.cache_dir)
    model_id = model_hash(model)
    # subjects the model never trained on (the val split also holds training subjects' val sentences)
    subjects = [s for s in corpus.split_subjects(args.split) if s not in model.config.styles]
    subjects = subjects[: args.subjects] if args.subjects else subjects
    mean_style = model.style_embedding.weight.detach().t().mean(0)
    print(f"{args.model}: {len(model.config.styles)} training styles; {args.split} subjects {', '.join(subjects)}")

    oracle = None if args.no_oracle else GeneratorOracle.for_corpus(corpus, regions, model.config.fps,
                                                                     load_default_head(args.cache_dir))
    pooled: dict[tuple, MetricSums] = {}
    seconds: dict[tuple, list[float]] = {}
    per_subject = []
    timing = None
    for subject in subjects:
        # val subjects (tuning) are scored on val + test sentences: test sentences alone are few
        train_utts, test_utts = sentence_sets(corpus, subject, ("test",) if args.split == "test" else ("val", "test"))
        test_utts = test_utts[: args.test_utterances] if args.test_utterances else test_utts
        tests = test_set(model, corpus, test_utts)
        if oracle is not None:
            for utt, test in zip(test_utts, tests):
                oracle.add(utt, test)
        generic = score(model, regions, tests, mean_style)
        score(model, regions, tests, mean_style, pooled.setdefault(("-", "generic (mean style)"),
                                                                    MetricSums(regions, model.config.fps)))
        record = {"subject": subject, "test_utterances": len(tests), "generic": generic.result(), "adapted": []}
        for length in args.lengths:
            rng = np.random.default_rng([args.seed, sum(map(ord, subject))])
            clip, mask = reference_clip(model, corpus, train_utts, length, rng)
            for label, steps2 in (("stage 1", 0), ("stages 1+2", args.steps2)):
                settings = AdaptSettings(steps1=args.steps1, steps2=steps2, init=args.init, lr1=args.lr1,
                                         lr2=args.lr2, holdout=args.holdout, gain=not args.no_gain)
                t0 = time.perf_counter()
                profile = adapt(model, clip, name=f"{subject}-{length:g}s", settings=settings, closures=mask,
                                template=corpus.templates[subject], model_id=model_id)
                took = time.perf_counter() - t0
                key = (f"{length:g} s", label)
                score(model, regions, tests, profile, pooled.setdefault(key, MetricSums(regions, model.config.fps)))
                seconds.setdefault(key, []).append(took)
                mine = score(model, regions, tests, profile).result()
                losses = profile.meta["losses"]
                record["adapted"].append({"seconds_of_reference": length, "method": label, "adapt_s": round(took, 2),
                                          "init": profile.meta["init"], "metrics": mine, "losses": losses})
                print(f"  {subject} {length:>4g} s {label:<10}  LVE {mine['lip_vertex_error_mm']:.3f} mm "
                      f"(generic {record['generic']['lip_vertex_error_mm']:.3f})  {took:.1f} s")
        if not args.no_self_fit:  # the bound: adapted on the scored utterances themselves
            seconds_scored = sum(len(t.target) for t in tests) / model.config.fps
            clip, mask = reference_clip(model, corpus, test_utts, seconds_scored, np.random.default_rng(args.seed))
            settings = AdaptSettings(steps1=args.steps1, steps2=args.steps2, init=args.init, lr1=args.lr1,
                                     lr2=args.lr2, holdout=0.0, gain=not args.no_gain,
                                     max_seconds=max(AdaptSettings.max_seconds, seconds_scored + 1.0))
            profile = adapt(model, clip, name=f"{subject}-self", settings=settings, closures=mask,
                            template=corpus.templates[subject], model_id=model_id)
            score(model, regions, tests, profile, pooled.setdefault(SELF_FIT, MetricSums(regions, model.config.fps)))
            record["self_fit"] = {"seconds": round(seconds_scored, 2), "metrics": score(model, regions, tests, profile).result()}
        per_subject.append(record)
        if timing is None and not args.no_timing:  # the user's path: closures recognized in the audio
            clip, _ = reference_clip(model, corpus, train_utts, 10.0, np.random.default_rng(args.seed))
            t0 = time.perf_counter()
            profile = adapt(model, clip, settings=AdaptSettings(steps1=args.steps1, steps2=args.steps2),
                            closures="auto", template=corpus.templates[subject])
            timing = {"clip_s": 10.0, "wall_s": round(time.perf_counter() - t0, 2), "threads": args.threads,
                      "closures": profile.meta["closures"], "adapt_s_inside": profile.meta["seconds"],
                      "steps": {k: profile.meta["losses"][k]["steps"] for k in ("stage1", "stage2")
                                if k in profile.meta["losses"]}}

    floor = None if args.no_floor else own_style_floor(model, corpus, regions, mean_style)
    fit = None if args.no_floor else own_style_floor(model, corpus, regions, mean_style, per_subject=1,
                                                     split="train")
    for what, row in (("val", floor), ("trained-on", fit)):
        if row is not None:
            print(f"floor: training subjects' {what} sentences in their own style: LVE {row['own_style_LVE_mm']:.3f} mm "
                  f"= {row['LVE_ratio']:.3f} x the mean style's ({row['utterances']} utterances)")
    oracle_row = None if oracle is None else oracle.result()
    if oracle_row is not None:
        print(f"oracle: the corpus generator with the true phones: own style {oracle_row['own_style_LVE_mm']:.3f} mm, "
              f"no style {oracle_row['generic_LVE_mm']:.3f} mm = {oracle_row['LVE_ratio']:.3f}x")
    base = pooled[("-", "generic (mean style)")].result()
    rows = []
    for (length, label), sums in pooled.items():
        r = sums.result()
        rows.append({
            "reference": length, "method": label,
            "LVE_mm": r["lip_vertex_error_mm"], "LVE_x1e-5": r["lip_vertex_error_sq_x1e-5"],
            "LVE_vs_generic": r["lip_vertex_error_mm"] / base["lip_vertex_error_mm"],
            "MVE_mm": r["mean_vertex_error_mm"],
            "closure_rate": r["bilabial_closure_rate"] if r["bilabial_closure_rate"] is not None else float("nan"),
            "adapt_s": float(np.mean(seconds[(length, label)])) if (length, label) in seconds else 0.0,
        })
    if timing is not None:
        print(f"user path: a 10 s clip (closures {timing['closures']['source']}) adapts in {timing['wall_s']} s "
              f"on {args.threads} threads")
    five = [r for r in rows if r["reference"] == "5 s" and r["method"] == "stages 1+2"]
    verdict = None
    if five:
        f = five[0]
        verdict = {"lve_ratio_5s": round(f["LVE_vs_generic"], 3), "lve_ok": f["LVE_vs_generic"] <= 0.6,
                   "mve_ok": f["MVE_mm"] <= base["mean_vertex_error_mm"],
                   "closure_ok": not (f["closure_rate"] < (base["bilabial_closure_rate"] or 0.0)),
                   "time_ok": None if timing is None else timing["wall_s"] <= 60.0}
        print(f"acceptance (5 s, stages 1+2): {verdict}")
    report(args.name, rows, {"model": str(args.model), "data": str(args.data), "subjects": subjects,
                             "steps": [args.steps1, args.steps2], "seed": args.seed, "threads": args.threads,
                             "timing_10s_user_path": timing, "acceptance": verdict, "own_style_floor": floor,
                             "own_style_fit": fit,
                             "generator_oracle": oracle_row,
                             "gt_closure_rate": base["gt_bilabial_closure_rate"], "per_subject": per_subject})


if __name__ == "__main__":
    main()
