"""The built zip installs, registers its sidebar tab and operators, and uninstalls cleanly."""

import bpy

OPERATORS = ("add_default_head", "add_flame_head", "bake_animation_file", "bake_test_motion", "clear_bake")


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


def test_every_operator_is_one_undo_step(ext):
    operators = [c for c in ext.mod("imitator_blender").CLASSES if issubclass(c, bpy.types.Operator)]
    assert sorted(c.bl_idname for c in operators) == sorted(f"imitator.{op}" for op in OPERATORS)
    for cls in operators:
        assert {"REGISTER", "UNDO"} <= set(cls.bl_options), cls.bl_idname
