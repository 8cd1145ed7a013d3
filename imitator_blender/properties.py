"""Per-scene settings shown in the sidebar, and the window manager's state of running jobs.

Scene settings are saved with the .blend; job state lives on the window manager, which is not
saved, and is reset when a file loads (a job never outlives the session that started it).
"""

import bpy

FPS_CHOICES = (
    ("KEEP", "Keep scene rate", "Keep the scene's frame rate; the animation is resampled to it"),
    ("MODEL", "Model rate", "Set the scene's frame rate to the model's (no resampling)"),
    ("24", "24 fps", "Set the scene to 24 frames per second"),
    ("25", "25 fps", "Set the scene to 25 frames per second"),
    ("30", "30 fps", "Set the scene to 30 frames per second"),
    ("50", "50 fps", "Set the scene to 50 frames per second"),
    ("60", "60 fps", "Set the scene to 60 frames per second"),
)

BAKE_MODES = (
    ("EXACT", "Exact basis",
     "The model's output exactly: one shape key per motion basis vector (at most 65) and one curve each"),
    ("ARKIT", "ARKit keys",
     "Weights solved per frame onto the head's 52 ARKit shape keys (default head), editable by hand; "
     "approximate, the fit error is shown"),
)


class ImitatorArkitPair(bpy.types.PropertyGroup):
    """One row of a rig's ARKit mapping: the ARKit name and the rig's own shape key."""

    arkit: bpy.props.StringProperty(name="ARKit")
    key: bpy.props.StringProperty(name="Shape key", description="The rig's shape key driven by this ARKit "
                                  "shape (empty: not driven)")


ARKIT_PRESETS = (
    ("ARKIT", "ARKit names", "jawOpen, JawOpen, jaw_open, blendShape1.jawOpen, mouthSmile_L ..."),
    ("CC4", "Character Creator", "Character Creator 4 / iClone names (Jaw_Open, Mouth_Smile_L, Brow_Raise_Inner ...)"),
)


class ImitatorSceneSettings(bpy.types.PropertyGroup):
    start_frame: bpy.props.FloatProperty(
        name="Start frame", description="Scene frame where the animation (and its sound) starts",
        default=1.0, min=-1e6, max=1e6, step=100,
    )
    animation_path: bpy.props.StringProperty(
        name="Animation", description="An animation .npz (vertices, or basis + weights) to bake",
        subtype="FILE_PATH",
    )
    audio_path: bpy.props.StringProperty(
        name="Audio", description="Speech recording to animate (WAV, FLAC, OGG, MP3; any rate, any length)",
        subtype="FILE_PATH",
    )
    dialog_text: bpy.props.StringProperty(
        name="Dialog text",
        description="What is said (optional): the lips close at its m, b and p, aligned to the audio. "
                    "Empty: a .txt file beside the audio if there is one, else the audio alone",
    )
    fps_mode: bpy.props.EnumProperty(
        name="Frame rate", items=FPS_CHOICES, default="KEEP",
        description="Frame rate of the scene when Generate bakes",
    )
    model_folder: bpy.props.StringProperty(
        name="Model", subtype="DIR_PATH",
        description="Model folder (config.json + model.safetensors); empty: the shipped default model",
    )
    bake_mode: bpy.props.EnumProperty(name="Bake as", items=BAKE_MODES, default="EXACT")
    lip_closure: bpy.props.BoolProperty(
        name="Close lips on m, b, p", default=True,
        description="Closure-aware decoding: press the lips together where the model hears m, b or p "
                    "(models with a contact head; off: the raw model output)",
    )
    arkit_preset: bpy.props.EnumProperty(
        name="Key names", items=ARKIT_PRESETS, default="ARKIT",
        description="How the rig names its ARKit shape keys (matched case- and separator-insensitively)")
    last_report: bpy.props.StringProperty(name="Status", default="")
    fit_error_mm: bpy.props.FloatProperty(
        name="Fit error", default=-1.0,
        description="Largest vertex distance (mm) between the model's output and the ARKit-key bake "
                    "(-1: no ARKit bake yet)",
    )


class ImitatorLogLine(bpy.types.PropertyGroup):
    text: bpy.props.StringProperty()


class ImitatorJobState(bpy.types.PropertyGroup):
    """What the panels and the status bar show about running background jobs."""

    generate_running: bpy.props.BoolProperty(default=False)
    generate_progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    generate_status: bpy.props.StringProperty(default="")
    generate_cancel: bpy.props.BoolProperty(default=False)  # set by the Cancel button
    generate_heartbeat: bpy.props.FloatProperty(default=-1e9)  # time.monotonic() of the last poll
    fit_running: bpy.props.BoolProperty(default=False)
    fit_progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    fit_status: bpy.props.StringProperty(default="")
    install_running: bpy.props.BoolProperty(default=False)
    install_progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    install_status: bpy.props.StringProperty(default="")
    install_log: bpy.props.CollectionProperty(type=ImitatorLogLine)
    detected_device: bpy.props.StringProperty(default="")


CLASSES = (ImitatorArkitPair, ImitatorSceneSettings, ImitatorLogLine, ImitatorJobState)


def reset_job_state(wm: bpy.types.WindowManager) -> None:
    state = wm.imitator_jobs
    state.generate_running = state.install_running = state.generate_cancel = state.fit_running = False
    state.generate_progress = state.install_progress = 0.0
    state.generate_status = ""


def register_properties() -> None:
    bpy.types.Scene.imitator = bpy.props.PointerProperty(type=ImitatorSceneSettings)
    bpy.types.WindowManager.imitator_jobs = bpy.props.PointerProperty(type=ImitatorJobState)
    bpy.types.Object.imitator_arkit_map = bpy.props.CollectionProperty(type=ImitatorArkitPair)


def unregister_properties() -> None:
    del bpy.types.Object.imitator_arkit_map
    del bpy.types.WindowManager.imitator_jobs
    del bpy.types.Scene.imitator
