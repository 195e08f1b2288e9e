"""The state directory, opened once and trusted only through descriptors.

Like OpenSSH's StrictModes, the state dir is refused when it, or any directory above it, can be
changed by a user other than root and its owner (a sticky directory such as /tmp is fine: there
nobody can rename what another user owns). The path is walked from `/` one component at a time
with `O_NOFOLLOW`, each directory checked through the descriptor that was opened, and every file
(key, databases) is opened relative to the state dir's descriptor and checked through the
descriptor it got. SQLite takes no descriptor: it opens the walked path, which is safe to look
up again because nobody but the user and root can change a directory on it, and the files it
holds open (the database, its `-wal` and `-shm`) are then checked to be the ones checked.
Directories voice2fa creates are 0700, files 0600, whatever the umask.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from voice2fa_cli import owned
from voice2fa_cli.errors import StoreError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO never hangs the open
SIDE_FILES = ("-wal", "-shm", "-journal")
DB_NAME = "sessions.sqlite3"  # in the state dir: real sessions
SANDBOX_DB_NAME = "sandbox.sqlite3"  # in the state dir: sandbox sessions, kept apart
KEY_NAME = "key"  # in the state dir: the per-install HMAC key  # what SQLite keeps beside a database


class Missing(Exception):
    """The state dir (or the file asked for) does not exist, and creating it was not asked."""


FIX = "choose a VOICE2FA_STATE_DIR under directories that only you and root can change"


def _check_ancestor(fd: int, path: Path) -> None:
    _judge_ancestor(os.fstat(fd), path)


def _judge_ancestor(st: os.stat_result, path: Path) -> None:
    if st.st_uid != 0 and not owned.is_mine(st):
        raise StoreError(
            f"the state dir's ancestor {path} belongs to another user (uid {st.st_uid}), who could swap "
            f"the state dir: {FIX}"
        )
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise StoreError(
            f"the state dir's ancestor {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}), "
            f"who could swap the state dir: run `chmod go-w {path}` or {FIX}"
        )


def check_private(st: os.stat_result, path: Path, what: str, want: int, kind: int = stat.S_IFREG) -> None:
    """An opened state file or dir: the right kind, the user's own, closed to others."""
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(f"the {what} {path} is a symbolic link: voice2fa keeps its state in real files")
    if stat.S_IFMT(st.st_mode) != kind:
        article = "a directory" if kind == stat.S_IFDIR else "a regular file"
        raise StoreError(f"the {what} {path} is not {article}: move it away")
    if not owned.is_mine(st):
        raise StoreError(f"the {what} {path} belongs to another user: use a state dir of your own")
    if st.st_mode & 0o077:
        raise StoreError(
            f"the {what} {path} is open to other users (mode {stat.S_IMODE(st.st_mode):o}): "
            f"run `chmod {want:o} {path}`"
        )


def _open_component(fd: int, name: str, path: Path, create: bool, what: str) -> tuple[int, bool]:
    """Open directory `name` under `fd` without following a link; create it 0700 if asked."""
    created = False
    while True:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd), created
        except FileNotFoundError:
            if not create:
                raise Missing(str(path)) from None
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
                created = True
            except FileExistsError:
                pass  # another voice2fa made it meanwhile: open it
            except OSError as exc:
                raise StoreError(f"cannot create the {what} {path}: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(
                    f"the {what} {path} is a symbolic link: voice2fa keeps its state in real files"
                ) from None
            if exc.errno == errno.ENOTDIR:
                if _is_link(fd, name):  # O_DIRECTORY may win over O_NOFOLLOW
                    raise StoreError(
                        f"the {what} {path} is a symbolic link: voice2fa keeps its state in real files"
                    ) from None
                raise StoreError(f"the {what} {path} exists and is not a directory") from None
            raise StoreError(f"cannot open the {what} {path}: {exc.strerror}") from None


def open_descriptors() -> set[int] | None:
    """This process's open descriptors, where the system tells (Linux), else None."""
    try:
        return {int(n) for n in os.listdir("/proc/self/fd")}
    except (OSError, ValueError):
        return None


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


class StateDir:
    """An open, checked state directory. Close it (or use `with`) when done."""

    def __init__(self, fd: int, path: Path, walked: Path) -> None:
        self.fd = fd
        self.path = path  # as given, for messages
        self.walked = walked  # with the ancestors' links resolved: the path that was checked

    @classmethod
    def open(cls, path: Path, *, create: bool, needs: str | None = None) -> StateDir:
        """Walk to the state dir, checking every directory on the way, and open it (creating
        what is missing, 0700, when `create`). Without `create`, Missing when the state dir or
        the file `needs` is absent (so nothing is judged, nor made, where nothing is kept)."""
        path = Path(os.path.abspath(path))
        if path == path.parent:
            raise StoreError(f"the state dir cannot be {path}: {FIX}")
        # The ancestors may be links (e.g. /var → /private/var): walk where they lead, after
        # checking the directories that hold the links (whoever can write there can repoint them).
        lexical = Path("/")
        for part in path.parent.parts[1:]:
            lexical = lexical / part
            try:
                _judge_ancestor(os.stat(lexical), lexical)
            except OSError:
                break  # missing (to be created below) or unreadable: the walk tells
        parent = Path(os.path.realpath(path.parent))
        fd = os.open("/", _DIR_FLAGS)
        try:
            _check_ancestor(fd, Path("/"))
            walked = Path("/")
            for part in parent.parts[1:]:
                walked = walked / part
                child, created = _open_component(fd, part, walked, create, "state dir's ancestor")
                os.close(fd)
                fd = child
                if created:
                    os.fchmod(fd, 0o700)  # whatever the umask
                _check_ancestor(fd, walked)
            state, created = _open_component(fd, path.name, path, create, "state dir")
        finally:
            os.close(fd)
        try:
            if not create and needs is not None and not _exists(state, needs):
                raise Missing(str(path / needs))
            if created:
                os.fchmod(state, 0o700)
            check_private(os.fstat(state), path, "state dir", 0o700, stat.S_IFDIR)
        except BaseException:
            os.close(state)
            raise
        return cls(state, path, parent / path.name)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> StateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- files -------------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        return _exists(self.fd, name)

    def open_file(self, name: str, what: str, flags: int = os.O_RDONLY) -> int:
        """Open `name` in the state dir (never through a link) and check the descriptor."""
        path = self.path / name
        try:
            fd = os.open(name, flags | _FILE_FLAGS, dir_fd=self.fd)
        except FileNotFoundError:
            raise Missing(str(path)) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(
                    f"the {what} {path} is a symbolic link: voice2fa keeps its state in real files"
                ) from None
            raise StoreError(f"cannot open the {what} {path}: {exc.strerror}") from None
        try:
            check_private(os.fstat(fd), path, what, 0o600)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def create_file(self, name: str, content: bytes = b"") -> bool:
        """Create `name` 0600 with `content`, atomically; False if it already exists."""
        import secrets

        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o600, dir_fd=self.fd)
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                os.write(fd, content)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
                return True
            except FileExistsError:
                return False
        except OSError as exc:
            raise StoreError(f"cannot create {self.path / name}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)

    def read_file(self, name: str, what: str, limit: int) -> bytes:
        fd = self.open_file(name, what)
        try:
            return os.read(fd, limit + 1)
        except OSError as exc:
            raise StoreError(f"cannot read the {what} {self.path / name}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def check_side_files(self, name: str) -> None:
        """SQLite's own files beside database `name`: real files of the user's, or absent."""
        for suffix in SIDE_FILES:
            try:
                st = os.stat(name + suffix, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot read {self.path / (name + suffix)}: {exc.strerror}") from None
            check_private(st, self.path / (name + suffix), "database file", 0o600)

    def check_opened(self, name: str, before: set[int] | None, checked: os.stat_result) -> None:
        """After SQLite opened database `name` (and its -wal and -shm): what it holds open is
        the database whose descriptor was checked, and side files of the user's own. SQLite
        opens by path name, so this is checked on the descriptors SQLite got (Linux: the
        descriptors that appeared since `before`), else on the path."""
        if before is None:
            try:
                st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except OSError:
                st = None
            if st is None or (st.st_dev, st.st_ino) != (checked.st_dev, checked.st_ino):
                raise StoreError(f"the database {self.path / name} changed while it was opened: try again")
            return
        wanted = {name: "database", name + "-wal": "database file", name + "-shm": "database file"}
        for fd in open_descriptors() or set():
            if fd in before:
                continue
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
                st = os.stat(f"/proc/self/fd/{fd}")  # the open file itself, whatever its name now
            except OSError:
                continue  # closed meanwhile (another thread's descriptor)
            base = os.path.basename(target.removesuffix(" (deleted)"))
            if not stat.S_ISREG(st.st_mode) or base not in wanted:
                continue
            if base == name and (st.st_dev, st.st_ino) != (checked.st_dev, checked.st_ino):
                raise StoreError(f"the database {self.path / name} changed while it was opened: try again")
            check_private(st, self.path / base, wanted[base], 0o600)

    def sqlite_path(self, name: str) -> str:
        """The name SQLite opens `name` by: the path that was walked and checked. SQLite takes
        no descriptor (and resolves /proc/self/fd/<dir> back to this same path name); the walk
        above makes the path safe to look up again (nobody but the user and root can change a
        directory on it), and `check_opened` then checks the descriptors SQLite holds."""
        return str(self.walked / name)
