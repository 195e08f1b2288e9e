"""The real environment over a checked `.env` in the working directory: the file is read only
when it is a regular file of this user's that no one else can write, and its values never
override the real environment's. Every problem is one ConfigError line (exit 2) that never
shows the file's content (a line may hold a secret)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from voice2fa_cli import owned
from voice2fa_cli.errors import ConfigError


class Environment(dict):
    """The real environment over `.env`, remembering which names came from `.env` and where
    that file was: a setting that decides where credentials go is never taken from it."""

    def __init__(self, values: Mapping[str, str] | None = None, dotenv: Path | None = None,
                 from_dotenv: frozenset[str] = frozenset()) -> None:
        super().__init__(values or {})
        self.dotenv = dotenv
        self.from_dotenv = from_dotenv


MAX_DOTENV = 256 * 1024  # bytes; a .env is a few lines


def load_environment(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> Environment:
    """The real environment over the values of `.env` in `cwd` (which never override it).

    The file is opened without following a symlink and without blocking (a FIFO would hang),
    then checked through its descriptor: a regular file, owned by this user, not writable by
    others. Anything else is refused (exit 2) rather than read."""
    environ = os.environ if environ is None else environ
    path = (cwd or Path.cwd()) / ".env"
    text = read_dotenv(path)
    if text is None:
        return Environment(environ)
    values = parse_dotenv(text, path)
    return Environment({**values, **environ}, path, frozenset(k for k in values if k not in environ))


def read_dotenv(path: Path) -> str | None:
    """The text of `path`, None when there is none, or a ConfigError (one line) when it is not
    a file the user alone controls."""
    import stat

    try:
        fd = owned.open_nofollow(path)
    except FileNotFoundError:
        return None
    except owned.IsLink:
        raise ConfigError(f"{path} is a symbolic link: voice2fa reads only a regular .env file; "
                          "copy the file there instead") from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                    or stat.S_ISBLK(st.st_mode) else "not a regular file")
            raise ConfigError(f"{path} is {kind}, not a regular file: remove it or replace it with a file")
        if not owned.is_mine(st):
            raise ConfigError(f"{path} belongs to another user (uid {st.st_uid}): voice2fa reads only a .env "
                              "of your own; remove it or run elsewhere")
        if _writable_by_others(st):
            raise ConfigError(f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}): "
                              f"run `chmod go-w {path}`")
        if st.st_size > MAX_DOTENV:
            raise ConfigError(f"{path} is larger than {MAX_DOTENV // 1024} KiB: a .env holds a few settings")
        chunks, size = [], 0
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as exc:
                raise ConfigError(f"{path} cannot be read: {exc.strerror}") from None
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_DOTENV:
                raise ConfigError(f"{path} is larger than {MAX_DOTENV // 1024} KiB: a .env holds a few settings")
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: fix or remove it") from None


def _writable_by_others(st: os.stat_result) -> bool:
    """World-writable, or group-writable by a group that has members besides this user
    (OpenSSH's rule: a user's private group is fine)."""
    if st.st_mode & 0o002:
        return True
    if not st.st_mode & 0o020:
        return False
    try:
        import grp
        import pwd

        group = grp.getgrgid(st.st_gid)
        me = pwd.getpwuid(owned.uid())
    except (ImportError, KeyError):
        return True
    members = set(group.gr_mem)
    return not (members <= {me.pw_name} and (members or st.st_gid == me.pw_gid))


def parse_dotenv(text: str, path: Path | str = ".env") -> dict[str, str]:
    """KEY=VALUE lines as python-dotenv reads them (no interpolation); junk lines are errors.
    A message names the line, never its content: the line may hold a secret."""
    import io

    from dotenv.parser import parse_stream

    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigError(
                f"{path} line {binding.original.line} is not KEY=VALUE: fix or remove that line"
            )
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values
