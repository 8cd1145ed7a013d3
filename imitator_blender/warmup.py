"""First-click warm-up: torch, the model and the audio path loaded in a background thread as soon
as the Imitator tab is first drawn, so the first Generate costs what the second does.

The loaded model is kept in ``MODELS`` (one per session, keyed by folder, weights file and
device) and handed to Generate's worker; a Generate that starts while the warm-up still loads
waits for it instead of loading a second copy. Nothing here touches bpy data.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class ModelCache:
    """The last model loaded (Generate runs one at a time), and the warm-up thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: tuple[tuple, object] | None = None
        self._thread: threading.Thread | None = None
        self.warm_seconds: float | None = None  # how long the warm-up took, once done

    @staticmethod
    def _key(folder: Path, device: str) -> tuple:
        folder = Path(folder).resolve()
        stats = [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.glob("*"))
                 if p.suffix in (".json", ".safetensors")]
        return str(folder), tuple(stats), device

    def get(self, folder: Path, device: str):
        """The model of ``folder`` on ``device`` (loaded now unless the last one is it)."""
        with self._lock:  # a warm-up still loading (or running its first pass) finishes first
            return self._load(folder, device)

    def _load(self, folder: Path, device: str):
        from ..core.model.checkpoint import from_pretrained

        key = self._key(folder, device)
        if self._entry is not None and self._entry[0] == key:
            return self._entry[1]
        model = from_pretrained(folder, device)
        self._entry = (key, model)
        return model

    def warm_up(self, folder: Path, device_choice: str) -> threading.Thread | None:
        """Start the warm-up once per session (later calls do nothing); returns its thread."""
        if self._thread is not None:
            return None
        self._thread = threading.Thread(target=self._warm, args=(Path(folder), device_choice),
                                        name="imitator-warmup", daemon=True)
        self._thread.start()
        return self._thread

    def _warm(self, folder: Path, device_choice: str) -> None:
        t0 = time.perf_counter()
        try:
            from ..core.model.generate import generate
            from .generate_job import resolve_device

            with self._lock:  # one pass over half a second of silence: kernels, features, caches
                model = self._load(folder, resolve_device(device_choice))
                generate(model, np.zeros(model.config.sample_rate // 2, np.float32), model.config.sample_rate)
            self.warm_seconds = time.perf_counter() - t0
            log.info("Imitator warmed up in %.1f s (%s)", self.warm_seconds, folder.name)
        except Exception as e:  # noqa: BLE001 - a failed warm-up only means a slower first click
            log.info("Imitator warm-up skipped: %s", e)

    def clear(self) -> None:
        with self._lock:
            self._entry = None


MODELS = ModelCache()


def warm_up_once(context) -> None:
    """From a panel's draw: start the warm-up if the packages and a model are there (cheap)."""
    if MODELS._thread is not None:
        return
    from . import dependencies
    from .generate_job import resolve_model_folder
    from .preferences import prefs

    folder = resolve_model_folder(context)
    if dependencies.missing_modules() or not (folder / "config.json").is_file():
        return
    MODELS.warm_up(folder, prefs(context).device)
