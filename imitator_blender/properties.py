"""Per-scene settings shown in the sidebar."""

import bpy


class ImitatorSceneSettings(bpy.types.PropertyGroup):
    start_frame: bpy.props.FloatProperty(
        name="Start frame", description="Scene frame where the animation (and its sound) starts",
        default=1.0, min=-1e6, max=1e6, step=100,
    )
    animation_path: bpy.props.StringProperty(
        name="Animation", description="An animation .npz (vertices, or basis + weights) to bake",
        subtype="FILE_PATH",
    )
    last_report: bpy.props.StringProperty(name="Status", default="")


CLASSES = (ImitatorSceneSettings,)


def register_properties() -> None:
    bpy.types.Scene.imitator = bpy.props.PointerProperty(type=ImitatorSceneSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.imitator
