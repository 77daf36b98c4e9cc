"""Whole-file replacement that a reader in another thread or process never sees half done.

State files (data API progress, the serving cache's pointers, `latest_model.json`) and archived
payloads are read while they are rewritten; a crash mid-write must leave the previous content.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomically(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data` (str as UTF-8) in one rename, creating its folder.

    The temporary file sits in the same folder (a rename is atomic only within one file system)
    under a unique name, so two threads or processes writing one path cannot collide, and it is
    removed if writing fails. It is created like `open` would (permissions from the umask, not
    mkstemp's 0600) because other containers' users read archived payloads.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with temporary.open("xb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
