"""Where sessions live: SQLite under the state dir (the embedded default) or a shared Redis.

The settings (config.store_spec) name one in a StoreSpec: no URL, the SQLite store; a
`redis://`, `rediss://` (TLS) or `unix://` URL, the shared store, whose `redis` package is
imported only then. Both backends keep the same interface and the same guarantees (one test
suite runs against both). The stores read no environment.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from voice2fa_cli import owned
from voice2fa_cli.errors import ConfigError, StoreError
from voice2fa_cli.stores.base import KEY_BYTES, SessionStore, StoreSpec

REDIS_MISSING = ("VOICE2FA_STORE names a Redis store, which needs the redis package: "
                 "pip install '.[redis]' in voice2fa's checkout")


def read_key_file(path: Path) -> bytes:
    """The shared HMAC key from VOICE2FA_KEY_FILE: a regular file of this user's, 0600 or
    stricter, holding 32 bytes (raw, or as 64 hex digits). Opened without following links and
    checked on the open descriptor."""
    try:
        fd = owned.open_nofollow(path)
    except owned.IsLink:
        raise StoreError(f"the key file {path} (VOICE2FA_KEY_FILE) is a symbolic link: name the real file") from None
    except OSError as exc:
        raise StoreError(f"cannot read the key file {path} (VOICE2FA_KEY_FILE): {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not owned.regular(st):
            raise StoreError(f"the key file {path} (VOICE2FA_KEY_FILE) is not a regular file")
        if not owned.is_mine(st):
            raise StoreError(
                f"the key file {path} (VOICE2FA_KEY_FILE) belongs to another user: copy it and own the copy"
            )
        if owned.open_to_others(st):
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
) -> SessionStore:
    """The store the settings name (a bare path: the SQLite store there), real sessions or,
    with `sandbox`, the sandbox's. The SQLite store raises NoStore when asked not to create
    and nothing is kept yet; the shared store is always there (or a StoreError)."""
    spec = where if isinstance(where, StoreSpec) else StoreSpec(state_dir=where)
    if spec.url is None:
        from voice2fa_cli.stores.sqlite import Store

        if clock is None:
            return Store.open(spec.state_dir, create=create, sandbox=sandbox)
        return Store.open(spec.state_dir, create=create, sandbox=sandbox, clock=clock)
    try:
        from voice2fa_cli.stores.redis import RedisStore
    except ImportError as exc:
        if exc.name != "redis":
            raise
        raise ConfigError(REDIS_MISSING) from None

    key = read_key_file(spec.key_file) if spec.key_file else _install_key(spec.state_dir)
    return RedisStore.open(
        spec.url, key, sandbox=sandbox, timeout=spec.timeout, clock=clock,
        ssl_ca_certs=str(spec.ca_file) if spec.ca_file else None,
    )


def _install_key(state_dir: Path) -> bytes:
    """This machine's per-install key (made on first use), when no VOICE2FA_KEY_FILE is set."""
    from voice2fa_cli.stores.sqlite import install_key

    return install_key(state_dir)
