"""The style list: adapted style profiles (``*.imstyle``) in the extension's user folder, in a UIList.

The folder is the truth: the list (on the window manager, never saved in a .blend) is rebuilt from
it on register, after a file load, after each style operator, and from a draw that finds it stale.
Renaming an entry in the list renames its file (applied by that refresh: see ``apply_renames``).
``draw_style_section`` is what the panel calls.
"""

import os
import re
from pathlib import Path

import bpy

from ..core.errors import ImitatorError
from ..core.style.profile import SUFFIX, read_profile_info
from .preferences import user_dir

STYLES_FOLDER = "styles"
MAX_NAME = 64
_BAD_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


# --------------------------------------------------------------------------- the folder

def styles_dir() -> Path:
    """``<user folder>/styles``, created on demand."""
    return user_dir(STYLES_FOLDER)


def profile_files(folder: Path | None = None) -> list[Path]:
    """The profiles of the styles folder, by name."""
    folder = styles_dir() if folder is None else folder
    return sorted((p for p in folder.glob(f"*{SUFFIX}") if p.is_file() and not p.name.startswith(".")),
                  key=lambda p: p.stem.lower())


def clean_name(name: str) -> str:
    """A style name that is a safe file name, or a one-line error saying what to change."""
    name = " ".join(str(name).split())
    if name.endswith(SUFFIX):
        name = name[: -len(SUFFIX)].rstrip()
    if not name:
        raise ImitatorError("style name is empty; type a name")
    bad = sorted(set(_BAD_CHARS.findall(name)))
    if bad or name.startswith(".") or name in (".", ".."):
        shown = " ".join(repr(c)[1:-1] for c in bad) or "a leading dot"
        raise ImitatorError(f"style name '{name}' has characters a file name cannot hold ({shown}); "
                            f"use letters, digits, spaces, - and _")
    if len(name) > MAX_NAME:
        raise ImitatorError(f"style name '{name[:20]}...' is {len(name)} characters; use at most {MAX_NAME}")
    return name


def unique_name(name: str, folder: Path | None = None) -> str:
    """``name``, or ``name.001``, ``name.002`` ... when a profile of that name exists."""
    folder = styles_dir() if folder is None else folder
    taken = {p.stem.lower() for p in profile_files(folder)}
    if name.lower() not in taken:
        return name
    n = 1
    while f"{name}.{n:03d}".lower() in taken:
        n += 1
    return f"{name}.{n:03d}"


def rename_style(path: Path, new_name: str) -> Path:
    """Rename a profile file; refuses names in use or not valid as file names."""
    new = path.with_name(clean_name(new_name) + SUFFIX)
    if new == path:
        return path
    if not path.is_file():
        raise ImitatorError(f"{path}: style file not found (deleted outside Blender?); refresh the list")
    if new.exists() and new.stem.lower() != path.stem.lower():
        raise ImitatorError(f"a style named '{new.stem}' exists already; choose another name")
    os.replace(path, new)
    return new


def describe(path: Path) -> str:
    """One line for the list: clip length, stages, date; or what is wrong with the file."""
    try:
        info = read_profile_info(path)
    except ImitatorError as e:
        return f"unreadable: {str(e).split('; ')[0].split(': ', 1)[-1]}"
    stages, gain = info.get("stages", 1), info.get("gain", 1.0)
    seconds = info.get("clip_seconds")
    fitted = ("style + final layer" if stages == 2
              else f"style + gain {gain:.2f}" if isinstance(gain, (int, float)) and gain != 1.0 else "style only")
    parts = [f"{seconds:.1f} s clip" if isinstance(seconds, (int, float)) else "", fitted,
             str(info.get("created", ""))[:10]]
    return ", ".join(p for p in parts if p)


# --------------------------------------------------------------------------- properties

def apply_renames(wm) -> bool:
    """Names typed into the list: rename their files, or put the old name back and say why.

    Polled (from the refresh timer, a draw that finds an edited name, every refresh) rather than
    an RNA update callback: a callback on a collection item's property crashes Blender 4.2 at exit
    once the extension is uninstalled. True if a file was renamed.
    """
    renamed = False
    for item in wm.imitator_styles:
        old = Path(item.filename)
        if not item.filename or item.name == old.stem:
            continue
        try:
            new = rename_style(styles_dir() / old.name, item.name)
        except ImitatorError as e:
            wm.imitator_style_status = str(e)
            item.name = old.stem
            continue
        item.filename, item.name = new.name, new.stem
        wm.imitator_style_status = f"Renamed style '{old.stem}' to '{new.stem}'"
        renamed = True
    return renamed


class ImitatorStyleItem(bpy.types.PropertyGroup):
    """One profile of the styles folder; ``name`` is its file name without ``.imstyle``."""

    name: bpy.props.StringProperty(name="Name", description="Style name (renames its file)")
    filename: bpy.props.StringProperty(options={"HIDDEN"})
    info: bpy.props.StringProperty(name="Info")


class ImitatorAdaptSettings(bpy.types.PropertyGroup):
    """What Adapt Style reads: a clip file or the active animated mesh, and the new style's name."""

    source: bpy.props.EnumProperty(
        name="Source", default="OBJECT",
        items=(("OBJECT", "Animated Object", "The active mesh, evaluated over the scene's frame range"),
               ("FILE", "Clip File", "A tracked clip: .npz, a folder of OBJ/PLY frames, FLAME "
                                     "parameters or a Live Link Face .csv")),
    )
    clip_path: bpy.props.StringProperty(
        name="Clip", subtype="FILE_PATH",
        description="Tracked clip: .npz (vertices or FLAME parameters), a folder of OBJ/PLY frames, "
                    "or a Live Link Face .csv")
    audio_path: bpy.props.StringProperty(
        name="Audio", subtype="FILE_PATH",
        description="The clip's speech; empty: the clip's own audio, or the scene's sound strip")
    lip_closures: bpy.props.BoolProperty(
        name="Lip Closures", default=True,
        description="Find m/b/p lip closures in the speech for the lip contact loss (needs the "
                    "pocketsphinx package; a few seconds)")
    transcript: bpy.props.StringProperty(
        name="Transcript", description="What is said (optional): finds lip closures more reliably")
    style_name: bpy.props.StringProperty(name="Name", default="My Style",
                                         description="Name of the new style")
    steps1: bpy.props.IntProperty(name="Style Steps", default=300, min=0, max=5000,
                                  description="Stage 1: steps that fit the style vector")
    steps2: bpy.props.IntProperty(name="Detail Steps", default=300, min=0, max=5000,
                                  description="Stage 2: steps that also fit the motion decoder's "
                                              "final layer (0: style vector only)")


def _index_changed(wm, context) -> None:
    wm.imitator_style_status = ""


PROPERTY_CLASSES = (ImitatorStyleItem, ImitatorAdaptSettings)


# --------------------------------------------------------------------------- the list

def selected_style_path(context) -> Path | None:
    """The profile the user picked in the list, or None (Generate then uses the model's mean style)."""
    wm = context.window_manager
    styles = getattr(wm, "imitator_styles", None)
    index = getattr(wm, "imitator_style_index", -1)
    if styles is None or not 0 <= index < len(styles):
        return None
    path = styles_dir() / styles[index].filename
    return path if path.is_file() else None


def _is_stale(wm) -> bool:
    """The folder changed, or a name was edited in the list."""
    items = wm.imitator_styles
    return ([p.name for p in profile_files()] != [item.filename for item in items]
            or any(item.name != Path(item.filename).stem for item in items))


def refresh_styles(wm, select: str | None = None) -> None:
    """Rebuild the list from the folder; keeps the selection (or selects the file named ``select``)."""
    current = wm.imitator_styles
    apply_renames(wm)
    files = profile_files()
    index = wm.imitator_style_index
    keep = select or (current[index].filename if 0 <= index < len(current) else None)
    if [p.name for p in files] != [item.filename for item in current]:
        current.clear()
        for path in files:
            item = current.add()
            item.filename, item.name = path.name, path.stem
            item.info = describe(path)
    else:
        for item, path in zip(current, files):
            if not item.info:
                item.info = describe(path)
    names = [p.name for p in files]
    new_index = names.index(keep) if keep in names else (-1 if not names else min(max(index, -1), len(names) - 1))
    if wm.imitator_style_index != new_index:
        status = wm.imitator_style_status
        wm.imitator_style_index = new_index
        wm.imitator_style_status = status  # a selection made here is no news


def _refresh_timer() -> None:
    wm = bpy.context.window_manager
    if wm is not None and hasattr(wm, "imitator_styles"):
        refresh_styles(wm)
    return None  # run once


@bpy.app.handlers.persistent
def _refresh_after_load(*_args) -> None:
    _refresh_timer()


class IMITATOR_UL_styles(bpy.types.UIList):
    """Adapted styles; double-click a name to rename it (its file is renamed on the next refresh,
    right after the edit)."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.prop(item, "name", text="", emboss=False, icon="USER")
        if item.info.startswith("unreadable"):
            row.label(text="", icon="ERROR")


def draw_style_section(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The styles list, its buttons, and the Adapt Style inputs (called by the Imitator panel)."""
    wm = context.window_manager
    if _is_stale(wm) and not bpy.app.timers.is_registered(_refresh_timer):
        bpy.app.timers.register(_refresh_timer, first_interval=0.0)  # draw may not write data
    col = layout.column()
    col.label(text="Styles", icon="USER")
    row = col.row()
    row.template_list("IMITATOR_UL_styles", "", wm, "imitator_styles", wm, "imitator_style_index", rows=3)
    buttons = row.column(align=True)
    buttons.operator("imitator.style_import", icon="IMPORT", text="")
    buttons.operator("imitator.style_export", icon="EXPORT", text="")
    buttons.operator("imitator.style_delete", icon="REMOVE", text="")
    buttons.separator()
    buttons.operator("imitator.style_refresh", icon="FILE_REFRESH", text="")
    index = wm.imitator_style_index
    if 0 <= index < len(wm.imitator_styles):
        col.label(text=wm.imitator_styles[index].info or "", icon="INFO")
    else:
        col.label(text="No style selected: Generate uses the model's mean style", icon="INFO")

    settings = context.scene.imitator_adapt
    box = layout.box()
    box.label(text="Adapt Style", icon="MOD_DATA_TRANSFER")
    box.row().prop(settings, "source", expand=True)
    if settings.source == "FILE":
        box.prop(settings, "clip_path")
    else:
        obj = context.active_object
        scene = context.scene
        text = (f"{obj.name}, frames {scene.frame_start}-{scene.frame_end}" if obj is not None
                and obj.type == "MESH" else "Select the animated head mesh")
        box.label(text=text, icon="OBJECT_DATA")
    box.prop(settings, "audio_path")
    box.prop(settings, "lip_closures")
    row = box.row()
    row.enabled = settings.lip_closures
    row.prop(settings, "transcript")
    box.prop(settings, "style_name")
    row = box.row(align=True)
    row.prop(settings, "steps1")
    row.prop(settings, "steps2")
    box.label(text="Adapts the model chosen under Generate", icon="INFO")
    busy = wm.imitator_style_busy
    row = box.row()
    row.enabled = not busy
    row.operator("imitator.adapt_style", icon="PLAY")
    if wm.imitator_style_status:
        box.label(text=wm.imitator_style_status, icon="TIME" if busy else "NONE")
        if busy:
            box.label(text="Esc cancels")


CLASSES = (*PROPERTY_CLASSES, IMITATOR_UL_styles)


def register_properties() -> None:
    wm = bpy.types.WindowManager
    wm.imitator_styles = bpy.props.CollectionProperty(type=ImitatorStyleItem)
    wm.imitator_style_index = bpy.props.IntProperty(name="Style", default=-1, min=-1,
                                                    update=_index_changed)
    wm.imitator_style_status = bpy.props.StringProperty(name="Status", default="")
    wm.imitator_style_busy = bpy.props.BoolProperty(default=False)
    bpy.types.Scene.imitator_adapt = bpy.props.PointerProperty(type=ImitatorAdaptSettings)
    if _refresh_after_load not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_refresh_after_load)
    try:  # the list right away when the context allows it (not during Blender's start-up)
        refresh_styles(bpy.context.window_manager)
    except (AttributeError, RuntimeError, OSError):
        bpy.app.timers.register(_refresh_timer, first_interval=0.1)


def unregister_properties() -> None:
    if _refresh_after_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_refresh_after_load)
    if bpy.app.timers.is_registered(_refresh_timer):
        bpy.app.timers.unregister(_refresh_timer)
    del bpy.types.Scene.imitator_adapt
    wm = bpy.types.WindowManager
    for name in ("imitator_style_busy", "imitator_style_status", "imitator_style_index", "imitator_styles"):
        delattr(wm, name)
