"""First-click warm-up: torch, the model and the audio path loaded in a background thread as soon
as the Imitator tab is first drawn, so the first Generate costs what the second does.

The loaded model is kept in ``MODELS`` (one per session, keyed by folder, weights file and
device) and handed to Generate's worker; a Generate that starts while the warm-up still loads
waits for it instead of loading a second copy. Nothing here touches bpy data.

Threads import the heavy packages one at a time (``import_core``): two threads importing scipy
at the same moment can be handed a half-initialised module ("partially initialized module ...
most likely due to a circular import"), so the warm-up, every job's worker and every operator
that starts one go through the same lock first.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# what Generate, Fit Head and Adapt Style import, heaviest first (relative names: the add-on's core)
CORE_MODULES = ("torch", "scipy.sparse", "scipy.sparse.csgraph", "scipy.spatial", "librosa", "soundfile",
                "..core.model.generate", "..core.faces.head_fit", "..core.faces.transfer", "..core.style.adapt")
_IMPORT_LOCK = threading.Lock()
_core_imported = False


def import_core() -> None:
    """Import ``CORE_MODULES`` once, one thread at a time; later calls return at once. A module
    that is missing is skipped (the code that needs it reports that) and tried again next time."""
    global _core_imported
    if _core_imported:
        return
    with _IMPORT_LOCK:
        if _core_imported:
            return
        complete = True
        for name in CORE_MODULES:
            try:
                importlib.import_module(name, __package__)
            except ImportError:
                complete = False
        _core_imported = complete


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
            import_core()
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
        self.join()
        with self._lock:
            self._entry = None

    def join(self, timeout: float = 60.0) -> None:
        """Let a running warm-up end (Blender quitting or the add-on being disabled under it)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


MODELS = ModelCache()
atexit.register(MODELS.join)  # torch's threads killed mid-import abort Blender on quit


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
