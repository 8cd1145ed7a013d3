"""Core meshes <-> Blender meshes: axis conversion, fast creation with foreach_set, checks."""

from __future__ import annotations

import bpy
import numpy as np

from ..core.errors import ImitatorError
from ..core.faces import Head, topology_hash

# Core is +Y up, face towards +Z (FLAME); Blender is +Z up, front view looks along +Y.
# (x, y, z) -> (x, -z, y): the face then looks towards -Y, i.e. at the front view camera.


def core_to_blender(points: np.ndarray) -> np.ndarray:
    """(..., 3) core coordinates -> Blender coordinates."""
    points = np.asarray(points)
    return np.stack([points[..., 0], -points[..., 2], points[..., 1]], axis=-1)


def blender_to_core(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def require_mesh(obj: bpy.types.Object | None, num_vertices: int | None = None) -> None:
    """Raise a one-line error unless ``obj`` is a mesh with the expected vertex count."""
    if obj is None:
        raise ImitatorError("no object selected; select a head mesh (or add one in the Head section)")
    if obj.type != "MESH":
        raise ImitatorError(f"'{obj.name}' is a {obj.type.lower()}, not a mesh; select a head mesh")
    if num_vertices is not None and len(obj.data.vertices) != num_vertices:
        raise ImitatorError(
            f"'{obj.name}' has {len(obj.data.vertices)} vertices but the animation has {num_vertices}; "
            "pick the head the animation was made for"
        )


def mesh_topology(mesh: bpy.types.Mesh) -> str:
    """The topology hash of a mesh, as ``core.faces.Head.topology`` computes it (loops taken in
    polygon order, whatever their order in the mesh)."""
    sizes = np.empty(len(mesh.polygons), np.int32)
    starts = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("loop_total", sizes)
    mesh.polygons.foreach_get("loop_start", starts)
    loops = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    order = np.repeat(starts - offsets, sizes) + np.arange(int(sizes.sum()))
    return topology_hash(len(mesh.vertices), sizes, loops[order])


def mesh_triangles(mesh: bpy.types.Mesh) -> np.ndarray:
    """(F, 3) int64 vertex indices of the mesh's triangulation (for fitting)."""
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return tris.reshape(-1, 3).astype(np.int64)


def key_coords(key_block: bpy.types.ShapeKey) -> np.ndarray:
    co = np.empty(len(key_block.data) * 3, dtype=np.float32)
    key_block.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def create_head_object(head: Head, context: bpy.types.Context, name: str | None = None) -> bpy.types.Object:
    """Add ``head`` as a smooth-shaded mesh object at the 3D cursor, with a Basis key and one
    shape key per named head shape. Returns the new active, selected object."""
    verts = core_to_blender(head.vertices).astype(np.float32)
    starts = np.concatenate([[0], np.cumsum(head.face_sizes)[:-1]]).astype(np.int32)
    mesh = bpy.data.meshes.new(name or head.name)
    mesh.vertices.add(len(verts))
    mesh.vertices.foreach_set("co", verts.ravel())
    mesh.loops.add(len(head.face_indices))
    mesh.loops.foreach_set("vertex_index", np.asarray(head.face_indices, dtype=np.int32))
    mesh.polygons.add(len(head.face_sizes))
    mesh.polygons.foreach_set("loop_start", starts)
    mesh.update(calc_edges=True)
    if mesh.validate():
        bpy.data.meshes.remove(mesh)
        raise ImitatorError(f"head '{head.name}' has invalid polygons; rebuild its cache")
    mesh.shade_smooth()
    mesh["imitator_topology"] = head.topology

    obj = bpy.data.objects.new(mesh.name, mesh)
    obj.location = context.scene.cursor.location
    context.collection.objects.link(obj)
    obj.shape_key_add(name="Basis", from_mix=False)
    for key_name, offset in head.shape_keys.items():
        kb = obj.shape_key_add(name=key_name, from_mix=False)
        kb.data.foreach_set("co", (verts + core_to_blender(offset)).astype(np.float32).ravel())
        kb.value = 0.0  # Blender 5.0 adds keys at 1.0 (4.x at 0.0): the head starts at rest
    for other in context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    return obj
