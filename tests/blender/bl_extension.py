"""The built zip installs, registers its sidebar tab and operators, and uninstalls cleanly."""

import bpy

# Operators that change the scene: each is one undo step.
SCENE_OPERATORS = ("add_default_head", "add_flame_head", "bake_animation_file", "bake_test_motion", "clear_bake",
                   "generate", "use_sample_audio", "use_model_folder", "show_landmarks", "clear_landmarks",
                   "match_arkit_names")
# Operators that only write files or preferences, or steer a running job: no undo step of their own.
OTHER_OPERATORS = ("cancel_generate", "export_npz", "export_obj_sequence", "export_arkit_csv",
                   "install_dependencies", "detect_device", "add_model_folder", "remove_model_folder",
                   "adapt_style", "style_import", "style_export", "style_rename", "style_delete",
                   "style_refresh", "fit_head")  # fit_head writes a fit file in the user folder
OPERATORS = SCENE_OPERATORS + OTHER_OPERATORS


def _imitator_classes() -> list[str]:
    """Registered classes of ours: panels and property groups in bpy.types, operators in bpy.ops."""
    ops = [f"IMITATOR_OT_{op}" for op in dir(bpy.ops.imitator) if hasattr(getattr(bpy.ops.imitator, op), "idname")]
    types = [name for name in dir(bpy.types) if name.startswith("IMITATOR_") or name.startswith("Imitator")]
    return sorted(set(types) | {o for o in ops if _op_registered(o)})


def _op_registered(idname: str) -> bool:
    try:
        getattr(bpy.ops.imitator, idname.split("_OT_")[1]).get_rna_type()
        return True
    except KeyError:
        return False


def test_install_register_and_remove(ext):
    panels = [getattr(bpy.types, n) for n in _imitator_classes() if "_PT_" in n]
    assert panels, "no panels registered"
    main = [p for p in panels if not getattr(p, "bl_parent_id", "")]
    assert len(main) == 1
    assert (main[0].bl_space_type, main[0].bl_region_type, main[0].bl_category) == ("VIEW_3D", "UI", "Imitator")
    for op in OPERATORS:
        assert getattr(bpy.ops.imitator, op).idname() == f"IMITATOR_OT_{op}"
    assert ext.module in bpy.context.preferences.addons
    assert hasattr(bpy.types.Scene, "imitator")

    bpy.ops.preferences.addon_disable(module=ext.module)
    assert _imitator_classes() == []
    assert not hasattr(bpy.types.Scene, "imitator")

    from tools.blender_session import uninstall_extension

    uninstall_extension()
    assert ext.module not in bpy.context.preferences.addons
    assert _imitator_classes() == []


def test_every_scene_operator_is_one_undo_step(ext):
    package = ext.mod("imitator_blender")
    operators = {c.bl_idname: c for c in package.CLASSES if issubclass(c, bpy.types.Operator)}
    assert sorted(operators) == sorted(f"imitator.{op}" for op in OPERATORS)
    for op in SCENE_OPERATORS:
        assert {"REGISTER", "UNDO"} <= set(operators[f"imitator.{op}"].bl_options), op
    for op in OTHER_OPERATORS:
        assert "UNDO" not in operators[f"imitator.{op}"].bl_options, op
