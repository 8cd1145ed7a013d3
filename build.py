"""Build the installable extension: dist/imitator-<version>.zip (python build.py).

Only what Blender needs goes in: the manifest, the root __init__.py, core/, imitator_blender/,
models/ and the licence. Tests, CI, benchmarks and caches stay out. The zip is reproducible
(sorted entries, fixed timestamps).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
INCLUDE = ("blender_manifest.toml", "__init__.py", "LICENSE", "core", "imitator_blender", "models")
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".tmp"}


def manifest() -> dict:
    data = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    for field in ("schema_version", "id", "version", "name", "blender_version_min", "license"):
        if field not in data:
            sys.exit(f"blender_manifest.toml: missing '{field}'")
    return data


def files_to_pack() -> list[Path]:
    found = []
    for name in INCLUDE:
        path = ROOT / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        found += [p for p in candidates
                  if not SKIP_PARTS & set(p.relative_to(ROOT).parts) and p.suffix not in SKIP_SUFFIXES]
    return sorted(found)


def build(out_dir: Path) -> Path:
    info = manifest()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{info['id']}-{info['version']}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files_to_pack():
            entry = zipfile.ZipInfo(path.relative_to(ROOT).as_posix(), date_time=(2024, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            zf.writestr(entry, path.read_bytes())
    tmp.replace(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    target = build(parser.parse_args().out)
    print(f"{target} ({target.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
