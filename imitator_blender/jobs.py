"""Background work for operators: a worker thread that never touches bpy, polled from the main thread.

The worker gets a ``report(fraction, text)`` callback (which raises ``JobCancelled`` once a cancel
was asked for, so the work stops at its next report) and returns a plain Python result. The main
thread calls ``poll()`` from a modal timer (or a loop when run headless) and applies the result
itself: only the main thread reads or writes Blender data.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.errors import ImitatorError
from .warmup import import_core

log = logging.getLogger(__name__)

Report = Callable[[float, str], None]


class JobCancelled(Exception):
    """Raised inside the worker by ``report`` after ``cancel()``."""


@dataclass
class Progress:
    fraction: float = 0.0
    text: str = ""


class BackgroundJob:
    """Runs ``work(report)`` in a daemon thread; ``poll`` says where it is, ``result`` what it gave."""

    def __init__(self, name: str, work: Callable[[Report], Any], uses_core: bool = True):
        self.name = name
        self._work = work
        self._uses_core = uses_core  # import torch & co. first, one thread at a time
        self._events: queue.Queue[Progress] = queue.Queue()
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self.progress = Progress(0.0, "starting")
        self.result: Any = None
        self.error: str | None = None
        self.cancelled = False
        self._thread = threading.Thread(target=self._run, name=f"imitator-{name}", daemon=True)

    # worker side ------------------------------------------------------------------------------
    def _report(self, fraction: float, text: str) -> None:
        if self._cancel.is_set():
            raise JobCancelled
        self._events.put(Progress(min(max(float(fraction), 0.0), 1.0), text))

    def _run(self) -> None:
        try:
            if self._uses_core:
                import_core()
            self.result = self._work(self._report)
        except JobCancelled:
            self.cancelled = True
        except ImitatorError as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - a worker must never die silently
            log.exception("%s job failed", self.name)
            self.error = f"{self.name} failed: {type(e).__name__}: {' '.join(str(e).split())}"
        finally:
            if self._cancel.is_set():
                self.cancelled = True
            self._finished.set()

    # main-thread side -------------------------------------------------------------------------
    def start(self) -> "BackgroundJob":
        self._thread.start()
        return self

    def poll(self) -> bool:
        """Take the latest progress; True once the worker has ended (result, error or cancelled)."""
        while True:
            try:
                self.progress = self._events.get_nowait()
            except queue.Empty:
                break
        return self._finished.is_set()

    def cancel(self) -> None:
        """Ask the worker to stop at its next report; its result, if any, will be ignored."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)


class JobOperator:
    """The operator side of a run (``update``/``finish``/``cancel`` around a BackgroundJob):
    ``execute`` waits for it (scripts, headless), ``invoke`` polls it from a timer in ``modal``,
    Esc cancels. Subclasses give ``_start(context)`` (the run, or None after reporting why) and
    ``_end(context, outcome)`` (reports, returns the operator result)."""

    cancelled_text = "Cancelled"

    def _cancel_requested(self, context) -> bool:
        """Another way to cancel besides Esc (e.g. a Cancel button's flag)."""
        return False

    def execute(self, context):
        import_core()  # one thread at a time (the warm-up may be importing right now)
        self._run = self._start(context)
        if self._run is None:
            return {"CANCELLED"}
        while not self._run.update(context):
            time.sleep(0.02)
        return self._end(context, self._run.finish(context))

    def invoke(self, context, event):
        import_core()
        self._run = self._start(context)
        if self._run is None:
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if (event.type == "ESC" and event.value == "PRESS") or self._cancel_requested(context):
            self._stop_timer(context)
            self._run.cancel(context)
            self.report({"WARNING"}, self.cancelled_text)
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            if not self._run.update(context):
                return {"PASS_THROUGH"}
            self._stop_timer(context)
            return self._end(context, self._run.finish(context))
        except Exception:
            self._stop_timer(context)
            self._run.cancel(context)
            raise

    def cancel(self, context):  # Blender ends the modal (file loaded, window closed)
        self._stop_timer(context)
        self._run.cancel(context)

    def _stop_timer(self, context) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None:
            context.window_manager.event_timer_remove(timer)
            self._timer = None
