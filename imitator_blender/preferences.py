"""Add-on preferences: device, model folders, FLAME file, and the dependency installer.

Also the extension's user folder (the only place the add-on writes) and the locations of what
ships inside the extension (the default model, the sample audio).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import bpy

from ..core.errors import ImitatorError
from . import dependencies
from .jobs import BackgroundJob

ADDON_ID = __package__.rpartition(".")[0]  # the extension package, e.g. bl_ext.user_default.imitator
EXTENSION_DIR = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = EXTENSION_DIR / "models" / "default"
SAMPLE_AUDIO = EXTENSION_DIR / "models" / "sample" / "sample.wav"
LOG_LINES = 200  # kept in the preferences; the whole log is in deps/install.log


def user_dir(*parts: str) -> Path:
    """A folder inside the extension's user folder, created on demand."""
    return Path(bpy.utils.extension_path_user(ADDON_ID, path="/".join(parts), create=True))


def prefs(context: bpy.types.Context) -> "ImitatorPreferences":
    return context.preferences.addons[ADDON_ID].preferences


def model_info(folder: Path) -> str:
    """One line about a model folder (encoder, vertices, topology, fps) or what is wrong with it."""
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return "missing config.json" if Path(folder).is_dir() else "folder not found"
    except (OSError, ValueError):
        return "unreadable config.json"
    if not isinstance(data, dict):
        return "not a model config"
    topo = data.get("topology") or "?"
    return (f"{data.get('encoder', '?')} encoder, {data.get('num_vertices', '?')} vertices, "
            f"topology {topo[:8]}, {data.get('fps', '?')} fps, {len(data.get('styles', []))} styles")


def detect_device() -> str:
    """What torch sees: the CUDA GPU's name, or CPU only (imports torch)."""
    if dependencies.missing_modules(["torch"]):
        return "torch is not installed"
    import torch

    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"CPU only (torch {torch.__version__})"


class ImitatorModelFolder(bpy.types.PropertyGroup):
    path: bpy.props.StringProperty(name="Folder", subtype="DIR_PATH")


class ImitatorPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    device: bpy.props.EnumProperty(
        name="Device", default="AUTO",
        items=(("AUTO", "Auto", "CUDA when torch sees a GPU, else the CPU"),
               ("CUDA", "CUDA", "An NVIDIA GPU (needs the CUDA build of torch)"),
               ("CPU", "CPU", "The processor; always available")),
    )
    model_folders: bpy.props.CollectionProperty(type=ImitatorModelFolder)
    flame_model_path: bpy.props.StringProperty(
        name="FLAME model file",
        description="Your own FLAME model (generic_model.pkl of FLAME 2020, or a FLAME 2023 pkl/npz); "
                    "it is licensed per user and never shipped",
        subtype="FILE_PATH",
    )
    torch_build: bpy.props.EnumProperty(
        name="torch build", default="CPU",
        items=(("CPU", "CPU", "Small download (about 200 MB); runs anywhere"),
               ("CUDA", "CUDA", "NVIDIA GPUs; a large download (several GB)")),
    )
    wheel_folder: bpy.props.StringProperty(
        name="Wheel folder", subtype="DIR_PATH",
        description="Install from a folder of .whl files instead of the internet (offline machines)",
    )

    def draw(self, context):
        layout = self.layout
        state = context.window_manager.imitator_jobs

        box = layout.box()
        box.label(text="Dependencies", icon="PACKAGE")
        col = box.column(align=True)
        for package, version in dependencies.package_status():
            ok = version is not None
            text = f"{package.dist} {version} (pinned {package.version})" if ok else \
                f"{package.dist}: not installed (pinned {package.version})"
            col.label(text=text, icon="CHECKMARK" if ok and version == package.version else
                      ("ERROR" if not ok else "INFO"))
        row = box.row()
        row.prop(self, "torch_build", expand=True)
        box.prop(self, "wheel_folder")
        if not bpy.app.online_access and not self.wheel_folder:
            box.label(text="Online access is off (Preferences > System > Network): choose a wheel "
                           "folder, or allow online access", icon="INTERNET_OFFLINE")
        if state.install_running:
            box.progress(factor=state.install_progress, type="BAR", text=state.install_status[:80])
        else:
            box.operator("imitator.install_dependencies", icon="IMPORT")
            if state.install_status:
                box.label(text=state.install_status)
        if len(state.install_log):
            log_col = box.column(align=True)
            log_col.scale_y = 0.7
            for line in list(state.install_log)[-12:]:
                log_col.label(text=line.text[:160])

        box = layout.box()
        box.label(text="Compute", icon="SETTINGS")
        row = box.row()
        row.prop(self, "device", expand=True)
        detected = state.detected_device or ("" if "torch" not in sys.modules else detect_device())
        row = box.row()
        row.label(text=f"Detected: {detected}" if detected else "Detected: (press Detect)")
        row.operator("imitator.detect_device", text="Detect")

        box = layout.box()
        box.label(text="Models", icon="FILE_FOLDER")
        row = box.row()
        row.label(text=f"Shipped default: {model_info(DEFAULT_MODEL)}")
        row.operator("imitator.use_model_folder", text="Use").index = -1
        for i, item in enumerate(self.model_folders):
            row = box.row()
            row.prop(item, "path", text="")
            row.label(text=model_info(Path(bpy.path.abspath(item.path))) if item.path else "")
            row.operator("imitator.use_model_folder", text="Use").index = i
            row.operator("imitator.remove_model_folder", text="", icon="X").index = i
        box.operator("imitator.add_model_folder", icon="ADD")

        box = layout.box()
        box.prop(self, "flame_model_path")
        box.label(text=f"User folder: {user_dir()}", icon="FILE_FOLDER")


# ------------------------------------------------------------------------------------------------
# Operators of the preferences


class IMITATOR_OT_install_dependencies(bpy.types.Operator):
    """Install the pinned Python packages (torch, ...) into the extension's user folder with pip"""

    bl_idname = "imitator.install_dependencies"
    bl_label = "Install Dependencies"
    bl_options = {"REGISTER"}

    packages: bpy.props.StringProperty(
        options={"HIDDEN", "SKIP_SAVE"},
        description="Requirements to install instead of the pinned set, 'name==version' separated by "
                    "spaces (for testing)",
    )

    def _start(self, context) -> bool:
        p = prefs(context)
        state = context.window_manager.imitator_jobs
        if state.install_running:
            self.report({"ERROR"}, "The dependency installer is already running; wait for it to finish")
            return False
        wheels = Path(bpy.path.abspath(p.wheel_folder)) if p.wheel_folder else None
        if wheels is None and not bpy.app.online_access:
            self.report({"ERROR"}, "Online access is disabled (Preferences > System > Network); allow "
                                   "it, or set a wheel folder in the Imitator preferences")
            return False
        packages = self._packages()
        if packages is None:
            return False
        root = user_dir("deps")
        log_path = root / "install.log"
        log_file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in _finish
        log_file.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} install {' '.join(p.requirement for p in packages)}\n")
        lines: list[str] = []

        def log_line(text: str) -> None:
            lines.append(text)
            log_file.write(text + "\n")
            log_file.flush()

        def work(report):
            return dependencies.install(root, packages, torch_build=p.torch_build,
                                        wheel_folder=wheels, log_line=log_line, report=report)

        state.install_log.clear()
        state.install_running, state.install_progress = True, 0.0
        state.install_status = "starting pip"
        self._root, self._lines, self._log_file, self._shown = root, lines, log_file, 0
        self._job = BackgroundJob("install", work, uses_core=False).start()
        return True

    def _packages(self):
        if not self.packages.strip():
            return list(dependencies.PACKAGES)
        out = []
        for spec in self.packages.split():
            name, sep, version = spec.partition("==")
            if not sep or not name or not version:
                self.report({"ERROR"}, f"'{spec}': give packages as name==version")
                return None
            out.append(dependencies.Package(name, version, name.replace("-", "_")))
        return out

    def _update(self, context) -> bool:
        done = self._job.poll()
        state = context.window_manager.imitator_jobs
        state.install_progress = self._job.progress.fraction
        state.install_status = self._job.progress.text[:200]
        new = self._lines[self._shown:]
        self._shown += len(new)
        for text in new:
            state.install_log.add().text = text[:300]
        while len(state.install_log) > LOG_LINES:
            state.install_log.remove(0)
        _redraw_all(context)
        return done

    def _finish(self, context) -> set[str]:
        self._update(context)
        self._log_file.close()
        state = context.window_manager.imitator_jobs
        state.install_running = False
        if self._job.cancelled:
            state.install_status = "Install cancelled; nothing was changed"
            self.report({"WARNING"}, state.install_status)
            return {"CANCELLED"}
        if self._job.error:
            state.install_status = self._job.error
            self.report({"ERROR"}, self._job.error)
            return {"CANCELLED"}
        dependencies.activate(self._root)
        stale = dependencies.loaded_from_other_sets(self._root)
        state.install_progress = 1.0
        state.install_status = (f"Installed; restart Blender to load the new {', '.join(stale)}" if stale
                                else "Installed; ready to Generate")
        self.report({"INFO"}, state.install_status)
        return {"FINISHED"}

    def execute(self, context):
        if not self._start(context):
            return {"CANCELLED"}
        while not self._update(context):
            time.sleep(0.05)
        return self._finish(context)

    def invoke(self, context, event):
        if not self._start(context):
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(0.2, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._job.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if not self._update(context):
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._finish(context)

    def cancel(self, context):
        self._job.cancel()
        self._job.wait(5.0)
        self._log_file.close()
        context.window_manager.imitator_jobs.install_running = False


class IMITATOR_OT_detect_device(bpy.types.Operator):
    """Ask torch which devices it can use (imports torch, which takes a moment the first time)"""

    bl_idname = "imitator.detect_device"
    bl_label = "Detect Device"
    bl_options = {"REGISTER"}

    def execute(self, context):
        context.window_manager.imitator_jobs.detected_device = detect_device()
        return {"FINISHED"}


class IMITATOR_OT_add_model_folder(bpy.types.Operator):
    """Add a model folder (config.json + model.safetensors) to the list"""

    bl_idname = "imitator.add_model_folder"
    bl_label = "Add Model Folder"
    bl_options = {"REGISTER"}

    directory: bpy.props.StringProperty(subtype="DIR_PATH")

    def execute(self, context):
        folder = Path(bpy.path.abspath(self.directory))
        try:
            _check_model_folder(folder)
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        prefs(context).model_folders.add().path = str(folder)
        context.preferences.is_dirty = True
        return {"FINISHED"}

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


class IMITATOR_OT_remove_model_folder(bpy.types.Operator):
    """Remove this folder from the list (the files stay)"""

    bl_idname = "imitator.remove_model_folder"
    bl_label = "Remove Model Folder"
    bl_options = {"REGISTER"}

    index: bpy.props.IntProperty()

    def execute(self, context):
        folders = prefs(context).model_folders
        if not 0 <= self.index < len(folders):
            return {"CANCELLED"}
        folders.remove(self.index)
        context.preferences.is_dirty = True
        return {"FINISHED"}


class IMITATOR_OT_use_model_folder(bpy.types.Operator):
    """Generate with this model in the current scene"""

    bl_idname = "imitator.use_model_folder"
    bl_label = "Use Model"
    bl_options = {"REGISTER", "UNDO"}

    index: bpy.props.IntProperty(default=-1, description="-1: the shipped default model")

    def execute(self, context):
        folders = prefs(context).model_folders
        context.scene.imitator.model_folder = folders[self.index].path if 0 <= self.index < len(folders) else ""
        return {"FINISHED"}


def _check_model_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ImitatorError(f"{folder}: folder not found; choose a model folder")
    if not (folder / "config.json").is_file():
        raise ImitatorError(f"{folder}: no config.json; a model folder holds config.json and "
                            f"model.safetensors")


def _redraw_all(context) -> None:
    for window in context.window_manager.windows:
        if window.screen is not None:
            for area in window.screen.areas:
                area.tag_redraw()


CLASSES = (ImitatorModelFolder, ImitatorPreferences, IMITATOR_OT_install_dependencies,
           IMITATOR_OT_detect_device, IMITATOR_OT_add_model_folder, IMITATOR_OT_remove_model_folder,
           IMITATOR_OT_use_model_folder)
