"""The control plane's data directory is private to its user, whatever the umask.

It holds the store (private keys of every mesh CA and the token signing keys), the DP
server's key and the bootstrap admin token, so:

- a new data directory is made 0700; the SQLite file is created 0600 before SQLite opens it
  (SQLite gives its ``-wal``/``-shm`` files the same mode), and every ``kumadp.db*`` file is
  set to 0600 after opening;
- an existing directory or store file that other users can read (group or other bits) stops
  the start with a message saying what to run, rather than serving keys someone else may
  have copied.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

STORE_GLOB = "kumadp.db*"


class DataDirError(Exception):
    """The data directory or a store file is not private; the message says how to fix it."""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def prepare_data_dir(data_dir: Path, store_file: str | None = None) -> None:
    """Create ``data_dir`` 0700 (parents as needed) or check that an existing one is
    private; check existing store files; create ``store_file`` (a name in it) 0600."""
    try:
        data_dir.mkdir(mode=0o700, parents=True)
        os.chmod(data_dir, 0o700)  # the umask may have taken bits off, never added any
    except FileExistsError:
        if not data_dir.is_dir():
            raise DataDirError(f"data directory {data_dir} is not a directory") from None
        mode = _mode(data_dir)
        if mode & 0o077:
            raise DataDirError(
                f"data directory {data_dir} is open to other users (mode {mode:o}); it holds "
                f"the control plane's private keys: run chmod 700 {data_dir}"
            ) from None
    except OSError as exc:
        raise DataDirError(
            f"cannot create data directory {data_dir}: {exc.strerror or exc}"
        ) from None
    for path in sorted(data_dir.glob(STORE_GLOB)):
        mode = _mode(path)
        if mode & 0o077:
            raise DataDirError(
                f"store file {path} is readable by other users (mode {mode:o}); it holds "
                f"private keys: run chmod 600 {data_dir}/{STORE_GLOB} (and consider them "
                "exposed: rotate the mesh CAs and signing keys)"
            )
    if store_file is not None:
        path = data_dir / store_file
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def restrict_store_files(data_dir: Path) -> None:
    """Every ``kumadp.db*`` file 0600 (what SQLite created after opening)."""
    for path in data_dir.glob(STORE_GLOB):
        os.chmod(path, 0o600)


def write_private_file(path: Path, content: str) -> None:
    """Write ``content`` to ``path``, mode 0600 also when it existed, atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", closefd=False) as f:
            f.write(content)
    finally:
        os.close(fd)
    os.replace(tmp, path)


__all__ = [
    "DataDirError",
    "prepare_data_dir",
    "restrict_store_files",
    "write_private_file",
]
