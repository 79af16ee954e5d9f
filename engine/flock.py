"""An exclusive flock waited for with a deadline, for files shared between processes.

POSIX only: `fcntl` is imported on the first call, so that importing this module
costs nothing where it is missing (a caller there catches the ImportError).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike


def lock_within(fd: FileDescriptorLike, timeout_s: float, name: str) -> None:
    """Take an exclusive flock on `fd` (a descriptor or an open file), trying every
    50 ms. Raises TimeoutError, naming `name`, when another process holds it for
    more than `timeout_s` seconds. Closing the file releases it."""
    import fcntl

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} stayed locked for {timeout_s:g} s") from None
            time.sleep(0.05)
