"""Reading inputs with a size cap and writing outputs atomically: the two file rules every command follows.

- `read_capped`: a file (or standard input) read whole, but never more than `MAX_INPUT` bytes: a bigger input
  (or `/dev/zero`) is a one-line UsageError instead of a MemoryError.
- `atomic_write`: written to a temporary file in the same directory and renamed over the target, so that an
  interruption, a full disk or a failed write never leaves a half-written file behind (the temporary file is
  removed on any failure). A private file is created 0600 from the start.
- `describe_os_error`: the one line for an OSError (what, which path, what to do), used by the CLI.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from lab.errors import UsageError

MAX_INPUT = 64 * 1024 * 1024  # the largest input (Corefile, curl output, access log, config dump) the lab reads


def read_capped(stream: BinaryIO, what: str, limit: int = MAX_INPUT) -> bytes:
    """Everything in `stream`, or UsageError when it holds more than `limit` bytes."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{what} is larger than {limit // (1024 * 1024)} MiB, more than any input the lab reads; "
                         "pass the file itself, not a device or a concatenation")
    return data


def read_file_capped(path: str | Path, limit: int = MAX_INPUT) -> bytes:
    with open(path, "rb") as fh:
        return read_capped(fh, str(path), limit)


def atomic_write(path: str | Path, data: bytes | str, *, private: bool = False, mode: int | None = None) -> Path:
    """Write `data` to `path` through a temporary file in the same directory and a rename (parents are created)."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o600 if private else (mode if mode is not None else 0o644))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_WHAT_TO_DO = {
    errno.ENOENT: "a directory on the path does not exist or cannot be created there: check it, or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another path",
    errno.EISDIR: "it is a directory: give a file, or move the directory away",
    errno.EACCES: "check its permissions, or choose another path",
    errno.EPERM: "check its permissions, or choose another path",
    errno.EROFS: "the file system is read-only: choose a path on a writable one",
    errno.ENOSPC: "free some disk space and run the command again",
    errno.EDQUOT: "free some disk space and run the command again",
    errno.EEXIST: "move it away, or choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ELOOP: "the path has a symbolic link loop: choose another path",
}


def describe_os_error(err: OSError, *, named: str | Path | None = None) -> str:
    """One line for an OSError: the operation's path(s), the reason, and what to do. A path equal to `named` (one
    the caller's message names already) is not repeated."""
    reason = err.strerror or type(err).__name__
    paths = [p for p in (err.filename, err.filename2)
             if p is not None and (named is None or os.fsdecode(p) != os.fsdecode(named))]
    where = " -> ".join(os.fsdecode(p) if isinstance(p, bytes) else str(p) for p in paths)
    todo = _WHAT_TO_DO.get(err.errno or -1, "check the path and its permissions, or choose another path")
    return f"{where}: {reason}; {todo}" if where else f"{reason}; {todo}"
