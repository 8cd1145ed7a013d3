"""Generate's main-thread step on the default head: 60 s of speech, after the model has run.

What the user waits for with Blender blocked is ``generate_job.apply`` (bake + sound strip + frame
range); the model and the ARKit fit run in the worker thread and are reported beside it. Uses the
shipped model when models/default exists, else a tiny random model of the same topology (the bake
cost depends on the basis size, 64 for the shipped model's feature_dim; the tiny one is padded to 64).
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import report  # noqa: E402
from tools.blender_session import install_extension, isolate_home  # noqa: E402

SECONDS, FPS = 60.0, 30
DEFAULT_MODEL = ROOT / "models" / "default"


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="imitator-bench-"))
    isolate_home(tmp / "home")
    import build

    zip_path = build.build(tmp / "dist")
    import bpy

    module = install_extension(zip_path)
    ext = lambda name: importlib.import_module(f"{module}.{name}")  # noqa: E731
    import torch

    torch.set_num_threads(1)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    bpy.ops.imitator.add_default_head()
    obj = bpy.context.active_object
    head = ext("core.faces.default_head").load_default_head(ext("imitator_blender.preferences").user_dir("cache"))

    audio = ext("core.audio")
    sample = audio.load_audio(ROOT / "models" / "sample" / "sample.wav")
    long = np.tile(sample, int(np.ceil(SECONDS * 16000 / len(sample))))[: int(SECONDS * 16000)]
    audio.save_wav(tmp / "speech60.wav", long, 16000, "PCM_16")
    scene.imitator.audio_path = str(tmp / "speech60.wav")
    if (DEFAULT_MODEL / "config.json").is_file():
        model_name = "shipped default"
    else:
        model_name = "tiny random (models/default missing)"
        scene.imitator.model_folder = str(tiny_model(ext, head, tmp / "model"))

    job = ext("imitator_blender.generate_job")
    rows = []
    for mode in ("EXACT", "ARKIT"):
        scene.imitator.bake_mode = mode
        request = job.prepare(bpy.context)
        t0 = time.perf_counter()
        result = job.run(request, lambda fraction, text: None)
        worker = time.perf_counter() - t0
        t0 = time.perf_counter()
        job.apply(bpy.context, request, result)
        main_thread = time.perf_counter() - t0
        t0 = time.perf_counter()
        job.apply(bpy.context, request, result)  # re-Generate: replaces the previous bake
        again = time.perf_counter() - t0
        keys = len([k for k in obj.data.shape_keys.key_blocks if k.name.startswith("IM_")]) or 52
        rows.append({"bake": "exact basis" if mode == "EXACT" else "ARKit keys (fit in worker)",
                     "frames": result.animation.num_frames, "keys": keys,
                     "main_thread_s": main_thread, "rebake_s": again, "worker_s": worker,
                     "fit_error_mm": result.fit_error * 1000})
    print(f"Generate on the default head ({head.num_vertices} vertices), {SECONDS:.0f} s of speech at "
          f"{FPS} fps, model: {model_name}, Blender {bpy.app.version_string}")
    report("bake_default_head", rows, {"seconds": SECONDS, "fps": FPS, "vertices": head.num_vertices,
                                       "model": model_name, "blender": bpy.app.version_string,
                                       "target_main_thread_s": 1.0})


def tiny_model(ext, head, folder: Path) -> Path:
    """A small random model with the shipped model's basis size (64), so the bake costs the same."""
    import torch

    m = ext("core.model")
    config = m.ImitatorConfig(encoder="logmel", encoder_options={"dim": 16, "n_mels": 20},
                              feature_dim=64, num_heads=4, ff_dim=128, window=600, overlap=60,
                              num_vertices=head.num_vertices, topology=head.topology, styles=["a"])
    torch.manual_seed(0)
    model = m.Imitator(config)
    keys = torch.tensor(np.stack([k.reshape(-1) for k in head.shape_keys.values()], 1))  # (3V, 52)
    with torch.no_grad():
        model.motion_decoder.final.weight.copy_(keys @ torch.rand(keys.shape[1], 64) * 0.05)
        model.template.copy_(torch.tensor(head.vertices))
    model.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    main()
