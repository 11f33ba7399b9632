"""One definition of the Cython sources' hash, shared by setup.py and the import-time check."""

from __future__ import annotations

import hashlib
from pathlib import Path


def source_hash(ext_dir: Path) -> str | None:
    """Hash of the .pyx/.pxd files in ``ext_dir``, or None when there are none."""
    sources = sorted(ext_dir.glob("*.p[xy][xd]"))
    if not sources:
        return None
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
