"""Prune an installed Lambda layer tree, strip debug symbols, optionally ship unchecked-hash .pyc.

    python3.12 layers/prune_layer.py ARTIFACTS_DIR/python [--compile 0|1] [--botocore-services s3,firehose,...]

Removed: test suites (``tests/`` directories inside packages), type stubs (``*.pyi``), C/Cython
sources and headers, console scripts (``bin/``), pip's ``__pycache__``. Shared objects get
``strip --strip-unneeded``, except the vendored libraries in ``*.libs/`` directories (auditwheel
renames and patches them; stripping them breaks imports). With ``--compile 1`` every module is
byte-compiled by this interpreter (the Lambda runtime's Python version) with
``--invalidation-mode unchecked-hash``: valid whatever the files' timestamps (SAM zips them as
1980) and never re-checked against the source, which a read-only layer cannot change anyway.
With ``--botocore-services``, botocore's API models (``botocore/data/<service>/``, 28 MB for
400-odd services) are kept only for the services listed; the shared files (endpoints,
partitions, retry and default configuration) stay. tests/infra checks that every service the code
creates a client for is kept.

Prints what it removed and the size before and after.
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

DROP_DIRS = {"tests", "__pycache__"}
DROP_SUFFIXES = {".pyi", ".pxd", ".pyx", ".pxi", ".c", ".cc", ".cpp", ".h", ".hpp", ".f", ".f90"}
KEEP_TOP_LEVEL = {"tests"}  # a top-level package really named tests would be kept (none today)


def size(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def prune(root: Path) -> dict[str, int]:
    removed = {"dirs": 0, "files": 0, "bytes": 0}
    bin_dir = root / "bin"
    if bin_dir.is_dir():
        removed["bytes"] += size(bin_dir)
        shutil.rmtree(bin_dir)
        removed["dirs"] += 1
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in list(dirnames):
            if name in DROP_DIRS and not (here == root and name in KEEP_TOP_LEVEL):
                target = here / name
                removed["bytes"] += size(target)
                removed["dirs"] += 1
                shutil.rmtree(target)
                dirnames.remove(name)
        for name in filenames:
            path = here / name
            if path.suffix in DROP_SUFFIXES and not path.is_symlink():
                removed["bytes"] += path.lstat().st_size
                removed["files"] += 1
                path.unlink()
    return removed


def strip(root: Path) -> tuple[int, int]:
    """strip --strip-unneeded every extension module outside *.libs/; (files, bytes saved)."""
    tool = shutil.which("strip")
    if tool is None:
        print("prune_layer: no `strip` on PATH; shared objects left as they are", file=sys.stderr)
        return 0, 0
    count, saved = 0, 0
    for path in root.rglob("*.so*"):
        if not path.is_file() or path.is_symlink() or any(part.endswith(".libs") for part in path.parts):
            continue
        before = path.stat().st_size
        done = subprocess.run([tool, "--strip-unneeded", str(path)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"prune_layer: strip failed on {path}: {done.stderr.strip()}", file=sys.stderr)
            continue
        count += 1
        saved += before - path.stat().st_size
    return count, saved


def prune_botocore(root: Path, services: set[str]) -> tuple[int, int]:
    data = root / "botocore" / "data"
    if not data.is_dir():
        return 0, 0
    count, freed = 0, 0
    for entry in data.iterdir():
        if entry.is_dir() and entry.name not in services:
            freed += size(entry)
            count += 1
            shutil.rmtree(entry)
    missing = sorted(s for s in services if not (data / s).is_dir())
    if missing:
        raise SystemExit(f"prune_layer: botocore has no API model for {', '.join(missing)}")
    return count, freed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--compile", default="0", choices=("0", "1"))
    p.add_argument("--botocore-services", default="", help="comma-separated services whose API models to keep")
    args = p.parse_args()
    root: Path = args.root
    if not root.is_dir():
        p.error(f"{root} is not a directory")
    before = size(root)
    removed = prune(root)
    stripped, saved = strip(root)
    services = {s.strip() for s in args.botocore_services.split(",") if s.strip()}
    dropped_models, models_bytes = prune_botocore(root, services) if services else (0, 0)
    compiled = 0
    if args.compile == "1":
        ok = compileall.compile_dir(
            str(root),
            quiet=1,
            workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        if not ok:
            print("prune_layer: some modules did not compile (left without .pyc)", file=sys.stderr)
        compiled = sum(1 for _ in root.rglob("*.pyc"))
    after = size(root)
    print(
        f"prune_layer: {root}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB; removed {removed['dirs']} dirs and "
        f"{removed['files']} files ({removed['bytes'] / 1e6:.1f} MB), stripped {stripped} shared objects "
        f"({saved / 1e6:.1f} MB), {dropped_models} botocore API models dropped ({models_bytes / 1e6:.1f} MB), "
        f"{compiled} .pyc (python {sys.version_info.major}.{sys.version_info.minor}, "
        "unchecked-hash)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
