"""The agent's work directory and the files it writes there."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kumadp.agent.errors import ConfigError

log = logging.getLogger(__name__)

BOOTSTRAP_FILE = "bootstrap.yaml"


@contextlib.contextmanager
def work_dir(path: str | None) -> Iterator[Path]:
    """The given directory (created 0700 if missing, kept afterwards), or a fresh temporary
    one with mode 0700 that is removed on exit. Other users can neither read it nor plant
    files in it: an existing directory they may write to is refused."""
    if path:
        directory = Path(path)
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = directory.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"--work-dir: cannot create {path}: {exc.strerror or exc}") from exc
        if not directory.is_dir():
            raise ConfigError(f"--work-dir: {path} is not a directory")
        if mode & 0o022:
            raise ConfigError(
                f"--work-dir: {path} is writable by other users (mode {mode & 0o7777:o}); "
                f"give a private directory (chmod 700 {path})"
            )
        if mode & 0o044:
            log.warning("--work-dir %s is readable by other users (mode %o)", path, mode & 0o777)
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="kumadp-"))
    try:
        directory.chmod(0o700)
        log.debug("work dir %s", directory)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def write_private(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` with mode 0600 (also when the file already existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(content)
    finally:
        os.close(fd)
