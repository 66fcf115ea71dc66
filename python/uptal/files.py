"""Writing files so that a crash never leaves a half-written file under the real name (ground floor: no uptal imports).

Every writer goes through a temporary file in the same folder, then `os.replace` (atomic on POSIX): readers
see the old file or the whole new one. The temporary name starts with "." so folder scans skip it.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["write_atomically", "write_text_atomically", "write_json_atomically"]


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """write(temporary_path) fills a temporary file, which then replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; other users of the data must read it
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_json_atomically(path: str | os.PathLike, value: Any) -> None:
    write_text_atomically(path, json.dumps(value, indent=1) + "\n")
