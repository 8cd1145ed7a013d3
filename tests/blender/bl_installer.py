"""The dependency installer, offline: a tiny wheel built here, installed from a local folder.

Installs (importable from the extension's user folder), refuses without online access, and a
failing install leaves the previous set active and nothing half-installed behind.
"""

import base64
import hashlib
import sys
import tomllib
import zipfile
from pathlib import Path

import bpy
from scene_setup import ROOT, expect_error

NAME = "imitator_tinydep"


def build_wheel(folder: Path, version: str) -> Path:
    """A pure-Python wheel holding ``imitator_tinydep`` with VALUE = version (no build tools needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{NAME}-{version}.dist-info"
    files = {
        f"{NAME}/__init__.py": f"VALUE = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: imitator-tinydep\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: bl_installer\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"{NAME}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_install_from_a_wheel_folder_and_failures_keep_the_previous_set(ext, tmp_dir):
    deps = ext.mod("imitator_blender.dependencies")
    prefs = bpy.context.preferences.addons[ext.module].preferences
    state = bpy.context.window_manager.imitator_jobs
    root = ext.mod("imitator_blender.preferences").user_dir("deps")
    wheels = tmp_dir / "wheels"
    build_wheel(wheels, "1.0")

    # Without online access (the default of a fresh Blender) only a wheel folder is allowed.
    assert not bpy.app.online_access
    expect_error(bpy.ops.imitator.install_dependencies, "Online access is disabled",
                 packages="imitator-tinydep==1.0")
    assert not root.exists() or not any(root.iterdir())

    prefs.wheel_folder = str(wheels)
    assert deps.missing_modules([NAME]) == [NAME]
    assert bpy.ops.imitator.install_dependencies(packages="imitator-tinydep==1.0") == {"FINISHED"}
    first = deps.active_set(root)
    assert first is not None and (first / NAME / "__init__.py").is_file()
    assert str(first.resolve()) in sys.path and sys.path.index(str(first.resolve())) > 0  # appended
    import imitator_tinydep

    assert imitator_tinydep.VALUE == "1.0"
    assert "Installed" in state.install_status and len(state.install_log) > 2
    assert (root / "install.log").read_text().count("imitator-tinydep") >= 2

    # A version the folder does not have: pip fails, the first set stays active and intact.
    active_before = (root / deps.ACTIVE).read_text()
    expect_error(bpy.ops.imitator.install_dependencies, "installing the packages failed",
                 "nothing was changed", packages="imitator-tinydep==9.9")
    assert (root / deps.ACTIVE).read_text() == active_before
    assert sorted(p.name for p in root.iterdir()) == sorted([deps.ACTIVE, first.name, "install.log"])
    assert not state.install_running

    # A newer version installs as a new set; the loaded module needs a restart, and says so.
    build_wheel(wheels, "2.0")
    assert bpy.ops.imitator.install_dependencies(packages="imitator-tinydep==2.0") == {"FINISHED"}
    second = deps.active_set(root)
    assert second != first and not first.exists()
    assert (second / NAME / "__init__.py").read_text() == "VALUE = '2.0'\n"
    assert "restart Blender" in state.install_status and NAME in state.install_status
    assert str(second.resolve()) in sys.path and str(first.resolve()) not in sys.path


def test_pins_pip_commands_and_manifest(ext, tmp_dir):
    deps = ext.mod("imitator_blender.dependencies")
    # The installer's pins are pyproject's.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = dict(r.split("#")[0].strip().split("==") for r in
                  project["dependencies"] + project["optional-dependencies"]["data"])
    for p in deps.PACKAGES:
        assert pinned.get(p.dist) == p.version, p
    # CPU or CUDA torch from PyTorch's index, the rest from PyPI; anny without dependencies.
    base = ["python", "-m", "pip"]
    for build, index in deps.TORCH_INDEX.items():
        first, second = deps.pip_commands(tmp_dir / "t", deps.PACKAGES, build, None, base)
        assert first[first.index("--index-url") + 1] == index and "--extra-index-url" in first
        assert "torch==2.13.0" in first and "anny==0.6.2" not in first
        assert "--no-deps" in second and second[-1] == "anny==0.6.2"
        assert "--target" in first and "--only-binary=:all:" in first
    offline = deps.pip_commands(tmp_dir / "t", deps.PACKAGES[:1], "CPU", tmp_dir, base)
    assert len(offline) == 1 and "--no-index" in offline[0] and "--index-url" not in offline[0]
    # Installing into the user folder needs no admin rights: everything stays under it.
    assert Path(offline[0][offline[0].index("--target") + 1]).is_relative_to(tmp_dir)
    # What Generate needs is checked without importing anything.
    assert deps.missing_modules(["imitator_not_a_module", "json"]) == ["imitator_not_a_module"]
    # The manifest declares the network (used only by the installer), with reasons terse enough for
    # Blender's strict manifest check (the extensions platform's).
    permissions = tomllib.loads((ROOT / "blender_manifest.toml").read_text())["permissions"]
    assert set(permissions) == {"files", "network"} and "Install Dependencies" in permissions["network"]
    for reason in permissions.values():
        assert len(reason) <= 64 and reason[-1].isalnum(), reason
