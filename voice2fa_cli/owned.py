"""Files that must be the user's own: opened without following a link (nor blocking on a FIFO)
and judged on the descriptor that was opened, never on a path looked up again.

Whose: the effective uid. It is the identity the kernel checks when voice2fa opens a file and
the owner of every file voice2fa creates, so a file of "ours" is one of that uid's; it equals
the real uid except in a setuid program, which voice2fa never is.
"""

from __future__ import annotations

import errno
import os
import stat

FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class IsLink(Exception):
    """The path names a symbolic link (O_NOFOLLOW refused it)."""


def open_nofollow(path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o600,
                  dir_fd: int | None = None) -> int:
    """os.open without following a final link: IsLink for a link, any other OSError as it is."""
    try:
        return os.open(path, flags | FLAGS, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IsLink(str(path)) from None
        raise


def uid() -> int:
    """The uid whose files are ours (see above)."""
    return os.geteuid()


def is_mine(st: os.stat_result) -> bool:
    return st.st_uid == uid()


def regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def open_to_others(st: os.stat_result, mask: int = 0o077) -> bool:
    """Whether the mode grants others any of `mask` (0o077: any access; 0o022: writing)."""
    return bool(st.st_mode & mask)
