"""Where sessions live: SQLite under the state dir (the embedded default) or a shared Redis.

`VOICE2FA_STORE` chooses: unset, the SQLite store; `redis://`, `rediss://` (TLS) or `unix://`,
the shared store, whose `redis` package is imported only then. Both backends keep the same
interface and the same guarantees (one test suite runs against both).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from voice2fa_cli.config import value
from voice2fa_cli.errors import ConfigError

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
DEFAULT_TIMEOUT = 3.0
KEY_BYTES = 32


@dataclass(frozen=True)
class StoreSpec:
    """Which store to open, from the settings; opening it is `open_store`."""

    state_dir: Path
    url: str | None = None  # None: SQLite under state_dir
    key_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    ca_file: Path | None = None

    @property
    def shared(self) -> bool:
        return self.url is not None

    def describe(self) -> str:
        if self.url is None:
            return f"SQLite in {self.state_dir}"
        from voice2fa_cli.stores.redis import safe_url

        return f"Redis at {safe_url(self.url)}"


def spec(env: Mapping[str, str], state_dir: Path) -> StoreSpec:
    """The store settings, checked: VOICE2FA_STORE, VOICE2FA_KEY_FILE, VOICE2FA_STORE_TIMEOUT,
    VOICE2FA_STORE_CA."""
    url = value(env, "VOICE2FA_STORE")
    key_file = value(env, "VOICE2FA_KEY_FILE")
    ca_file = value(env, "VOICE2FA_STORE_CA")
    for name, raw in (("VOICE2FA_STORE", url), ("VOICE2FA_KEY_FILE", key_file), ("VOICE2FA_STORE_CA", ca_file)):
        if raw is not None and any(ord(c) < 32 or ord(c) == 127 for c in raw):
            raise ConfigError(f"{name} contains a control character")
    if url is not None and not url.startswith(REDIS_SCHEMES):
        raise ConfigError(
            "VOICE2FA_STORE must be a redis://, rediss:// or unix:// URL (unset: the local SQLite store)"
        )
    if url is not None:
        try:
            import redis  # noqa: F401  (an optional dependency: `pip install .` leaves it out)
        except ImportError:
            raise ConfigError(
                "VOICE2FA_STORE names a Redis store, which needs the redis package: pip install 'voice2fa[redis]'"
            ) from None
    if url is None and (key_file or ca_file):
        name = "VOICE2FA_KEY_FILE" if key_file else "VOICE2FA_STORE_CA"
        raise ConfigError(f"{name} is for the shared store: set VOICE2FA_STORE too, or unset {name}")
    if ca_file is not None and not url.startswith("rediss://"):
        raise ConfigError("VOICE2FA_STORE_CA is for a TLS store: use a rediss:// URL in VOICE2FA_STORE")
    timeout = DEFAULT_TIMEOUT
    raw_timeout = value(env, "VOICE2FA_STORE_TIMEOUT")
    if raw_timeout is not None:
        timeout = _seconds(raw_timeout, "VOICE2FA_STORE_TIMEOUT")
    return StoreSpec(
        state_dir=state_dir,
        url=url,
        key_file=Path(key_file).expanduser() if key_file else None,
        timeout=timeout,
        ca_file=Path(ca_file).expanduser() if ca_file else None,
    )


def _seconds(raw: str, name: str) -> float:
    text = raw.strip()
    whole, _, frac = text.partition(".")
    if not (whole.isascii() and whole.isdigit() and (not frac or (frac.isascii() and frac.isdigit()))):
        raise ConfigError(f"{name} must be a number of seconds from 0.1 to 60, such as 3 or 0.5")
    seconds = float(text)
    if not 0.1 <= seconds <= 60:
        raise ConfigError(f"{name} must be a number of seconds from 0.1 to 60, such as 3 or 0.5")
    return seconds


def read_key_file(path: Path) -> bytes:
    """The shared HMAC key from VOICE2FA_KEY_FILE: a regular file of this user's, 0600 or
    stricter, holding 32 bytes (raw, or as 64 hex digits). Opened without following links and
    checked on the open descriptor."""
    from voice2fa_cli.errors import StoreError

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: a symbolic link
            raise StoreError(f"the key file {path} (VOICE2FA_KEY_FILE) is a symbolic link: name the real file") from None
        raise StoreError(f"cannot read the key file {path} (VOICE2FA_KEY_FILE): {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"the key file {path} (VOICE2FA_KEY_FILE) is not a regular file")
        if st.st_uid != os.getuid():
            raise StoreError(f"the key file {path} (VOICE2FA_KEY_FILE) belongs to another user: copy it and own the copy")
        if st.st_mode & 0o077:
            raise StoreError(
                f"the key file {path} (VOICE2FA_KEY_FILE) is open to other users "
                f"(mode {stat.S_IMODE(st.st_mode):o}): run `chmod 600 {path}`"
            )
        data = os.read(fd, 256)
    finally:
        os.close(fd)
    if len(data) == KEY_BYTES:
        return data
    text = data.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise StoreError(
        f"the key file {path} (VOICE2FA_KEY_FILE) holds no key: it must hold {KEY_BYTES} bytes "
        f"or {2 * KEY_BYTES} hex digits (copy the `key` file of a machine's state dir)"
    )


def open_store(
    where: StoreSpec | Path,
    *,
    sandbox: bool = False,
    create: bool = True,
    clock: Callable[[], float] | None = None,
):
    """The store the settings name (a bare path: the SQLite store there), real sessions or,
    with `sandbox`, the sandbox's. The SQLite store raises NoStore when asked not to create
    and nothing is kept yet; the shared store is always there (or a StoreError)."""
    spec = where if isinstance(where, StoreSpec) else StoreSpec(state_dir=where)
    if spec.url is None:
        from voice2fa_cli.stores.sqlite import Store

        kwargs = {} if clock is None else {"clock": clock}
        return Store.open(spec.state_dir, create=create, sandbox=sandbox, **kwargs)
    try:
        from voice2fa_cli.stores.redis import RedisStore
    except ImportError as exc:
        if exc.name != "redis":
            raise
        raise ConfigError(
            "VOICE2FA_STORE names a Redis store, which needs the redis package: pip install 'voice2fa[redis]'"
        ) from None

    key = read_key_file(spec.key_file) if spec.key_file else _install_key(spec.state_dir)
    return RedisStore.open(
        spec.url, key, sandbox=sandbox, timeout=spec.timeout, clock=clock,
        ssl_ca_certs=str(spec.ca_file) if spec.ca_file else None,
    )


def _install_key(state_dir: Path) -> bytes:
    """This machine's per-install key (made on first use), when no VOICE2FA_KEY_FILE is set."""
    from voice2fa_cli.stores.sqlite import install_key

    return install_key(state_dir)
