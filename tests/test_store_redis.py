"""The shared store against a real redis-server: what only a network store can get wrong.

The behaviour both backends share (single use, attempts, lockout, limits, supersede, listing) is
tested once for both in test_store.py; here: the key and its fingerprint, the settings, failing
closed (down, slow, full, read-only, refused credentials), TLS, restarts, Cluster hash tags and
nothing readable at rest.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.redis_server import REDIS_SERVER, RedisServer, free_port
from voice2fa_cli import config, stores
from voice2fa_cli.stores.base import StoreSpec
from voice2fa_cli.errors import ConfigError, StoreError

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")

redis = pytest.importorskip("redis")

from voice2fa_cli.stores.redis import RedisStore
from voice2fa_cli.stores.base import safe_url
from voice2fa_cli.stores.redis_keys import PREFIX, fingerprint_of  # noqa: E402

NUMBER = "+15551234567"
CODE = "481516"
T0 = 1_700_000_000.0


@pytest.fixture
def url(redis_server) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


def raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=False)


def everything(url: str) -> dict[bytes, object]:
    """Every key and what it holds, read back with plain commands."""
    r = raw(url)
    out: dict[bytes, object] = {}
    for k in r.keys("*"):
        kind = r.type(k)
        if kind == b"string":
            out[k] = r.get(k)
        elif kind == b"hash":
            out[k] = r.hgetall(k)
        elif kind == b"zset":
            out[k] = r.zrange(k, 0, -1, withscores=True)
    return out


def add(store, session_id="s1", number=NUMBER, code=CODE, ttl=600.0):
    return store.create_session(session_id=session_id, number=number, code=code, ttl=ttl, call_sid="c1",
                                call_status="queued")


# --- the key -------------------------------------------------------------------------------


def test_a_machine_with_another_key_is_refused_before_writing(url, key):
    with RedisStore.open(url, key, clock=lambda: T0) as first:
        add(first)
    before = everything(url)
    other = secrets.token_bytes(32)
    with pytest.raises(StoreError) as info:
        RedisStore.open(url, other)
    assert info.value.message == (
        f"the store {url} was set up with another key (fingerprint {fingerprint_of(key)}, this machine's is "
        f"{fingerprint_of(other)}): give every machine the same key with VOICE2FA_KEY_FILE"
    )
    assert info.value.exit_code == 2
    assert everything(url) == before


def test_the_key_and_the_code_are_nowhere_in_redis(url, key):
    with RedisStore.open(url, key, clock=lambda: T0) as store:
        add(store, code="90817263")
        store.check(NUMBER, "12345678")
        store.reserve_call(NUMBER, 30)
    dump = repr(everything(url)).encode()
    for secret in (b"90817263", "90817263".encode("utf-16-le"), key, key.hex().encode()):
        assert secret not in dump
    assert fingerprint_of(key).encode() in dump  # only the fingerprint, which can't be tried offline


def test_key_file_raw_or_hex(tmp_path, key):
    path = tmp_path / "k"
    for content in (key, key.hex().encode() + b"\n"):
        path.write_bytes(content)
        path.chmod(0o600)
        assert stores.read_key_file(path) == key


@pytest.mark.parametrize("content", [b"", b"short", b"x" * 33, b"zz" * 32])
def test_key_file_without_a_key_is_refused(tmp_path, content):
    path = tmp_path / "k"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(StoreError) as info:
        stores.read_key_file(path)
    assert info.value.message == (
        f"the key file {path} (VOICE2FA_KEY_FILE) holds no key: it must hold 32 bytes or 64 hex digits "
        "(copy the `key` file of a machine's state dir)"
    )


def test_key_file_open_to_others_symlinked_foreign_or_not_a_file_is_refused(tmp_path, key):
    path = tmp_path / "k"
    path.write_bytes(key)
    path.chmod(0o640)
    with pytest.raises(StoreError, match=r"is open to other users \(mode 640\): run `chmod 600 "):
        stores.read_key_file(path)
    path.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(StoreError, match="is a symbolic link"):
        stores.read_key_file(link)
    os.chown(path, 12345, 12345)
    with pytest.raises(StoreError, match="belongs to another user"):
        stores.read_key_file(path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(StoreError, match="is not a regular file"):
        stores.read_key_file(fifo)  # and does not hang


# --- settings ------------------------------------------------------------------------------


def test_spec_reads_the_settings(tmp_path):
    spec = config.store_spec({}, tmp_path)
    assert spec == StoreSpec(state_dir=tmp_path) and not spec.shared
    assert spec.describe() == f"SQLite in {tmp_path}"
    spec = config.store_spec({"VOICE2FA_STORE": "redis://u:pw@h:6380/2", "VOICE2FA_STORE_TIMEOUT": "0.5"}, tmp_path)
    assert spec.shared and spec.timeout == 0.5
    assert spec.describe() == "Redis at redis://***@h:6380/2"  # the user name too (it may be a token)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"VOICE2FA_STORE": "http://h"}, "VOICE2FA_STORE must be a redis://, rediss:// or unix:// URL (unset: the local SQLite store)"),
        ({"VOICE2FA_STORE": "redis://h\x1b[2J"}, "VOICE2FA_STORE contains a control character"),
        ({"VOICE2FA_KEY_FILE": "/k"}, "VOICE2FA_KEY_FILE is for the shared store: set VOICE2FA_STORE too, or unset VOICE2FA_KEY_FILE"),
        ({"VOICE2FA_STORE": "redis://h", "VOICE2FA_STORE_CA": "/ca"}, "VOICE2FA_STORE_CA is for a TLS store: use a rediss:// URL in VOICE2FA_STORE"),
        ({"VOICE2FA_STORE": "redis://h", "VOICE2FA_STORE_TIMEOUT": "²"}, "VOICE2FA_STORE_TIMEOUT must be a number of seconds from 0.1 to 60, such as 3 or 0.5"),
        ({"VOICE2FA_STORE": "redis://h", "VOICE2FA_STORE_TIMEOUT": "0"}, "VOICE2FA_STORE_TIMEOUT must be a number of seconds from 0.1 to 60, such as 3 or 0.5"),
        ({"VOICE2FA_STORE": "redis://h", "VOICE2FA_STORE_TIMEOUT": "1e3"}, "VOICE2FA_STORE_TIMEOUT must be a number of seconds from 0.1 to 60, such as 3 or 0.5"),
    ],
)
def test_spec_refuses_bad_settings(tmp_path, env, message):
    with pytest.raises(ConfigError) as info:
        config.store_spec(env, tmp_path)
    assert info.value.message == message


def test_safe_url_masks_the_password():  # more in tests/test_store_credentials.py
    assert safe_url("redis://alice:s3cret@10.0.0.1:6379/0") == "redis://***@10.0.0.1:6379/0"
    assert safe_url("rediss://:s3cret@[::1]:6380") == "rediss://***@[::1]:6380"
    assert safe_url("unix:///run/redis.sock") == "unix:///run/redis.sock"


# --- failing closed ------------------------------------------------------------------------


def test_a_server_that_is_down_is_one_line(tmp_path, key):
    url = f"unix://{tmp_path}/nothing.sock"
    with pytest.raises(StoreError) as info:
        RedisStore.open(url, key, timeout=0.5)
    assert info.value.message.startswith(f"the store {url} cannot be reached: ")
    assert "\n" not in info.value.message


def store_whose_server_stopped(tmp_path, key) -> tuple[RedisStore, str]:
    """A store that held a session, on a redis-server that is stopped since; and its URL."""
    srv = RedisServer(tmp_path).start()
    try:
        store = RedisStore.open(srv.url, key, timeout=0.5, clock=lambda: T0)
        add(store)
    finally:
        srv.stop()
    return store, srv.url


def test_a_store_that_goes_down_mid_use_fails_closed(tmp_path, key):
    store, url = store_whose_server_stopped(tmp_path, key)
    with pytest.raises(StoreError) as info:
        store.check(NUMBER, CODE)
    assert info.value.message.startswith(f"the store {url} cannot be reached: ")


def test_a_slow_server_times_out(url, key):
    store = RedisStore.open(url, key, timeout=0.2, clock=lambda: T0)
    raw(url).execute_command("CLIENT", "PAUSE", "1500", "ALL")
    try:
        with pytest.raises(StoreError) as info:
            store.check(NUMBER, CODE)
    finally:
        raw(url).execute_command("CLIENT", "UNPAUSE")
    assert info.value.message == f"the store {url} did not answer in time: is the server overloaded or unreachable?"


def test_a_full_server_refuses_writes_in_one_line(url, key):
    store = RedisStore.open(url, key, clock=lambda: T0)
    admin = raw(url)
    admin.config_set("maxmemory", "1")
    try:
        with pytest.raises(StoreError) as info:
            add(store)
    finally:
        admin.config_set("maxmemory", "0")
    assert info.value.message == f"the store {url} is full (maxmemory reached): free memory on the server"
    assert store.recent() == []


def test_a_read_only_replica_is_refused(url, key, tmp_path, redis_server):
    with RedisStore.open(url, key, clock=lambda: T0):
        pass  # the primary knows the key's fingerprint
    replica = RedisServer(tmp_path, extra=["--replicaof", "127.0.0.1", "1"]).start()
    try:
        # A replica (of nothing here) answers reads but refuses every write; opening writes
        # the key's fingerprint, so it is refused at once.
        with pytest.raises(StoreError) as info:
            RedisStore.open(replica.url, key)
    finally:
        replica.stop()
    assert info.value.message == (
        f"the store {replica.url} is read-only (a replica?): point VOICE2FA_STORE at the primary"
    )


def test_acl_user_and_wrong_password(url, key):
    admin = raw(url)
    admin.execute_command("ACL", "SETUSER", "desk", "on", ">right-pw", "~voice2fa:*", "+@all", "-@dangerous", "+info")
    path = url.removeprefix("unix://")
    good = f"unix://desk:right-pw@{path}"
    with RedisStore.open(good, key, clock=lambda: T0) as store:
        add(store)
        assert store.check(NUMBER, CODE).verified
    bad = f"unix://desk:wrong-pw@{path}"
    with pytest.raises(StoreError) as info:
        RedisStore.open(bad, key)
    shown = f"unix://***@{path}"
    assert info.value.message == (
        f"the store {shown} refused the credentials: check the user and password in VOICE2FA_STORE"
    )
    assert "wrong-pw" not in info.value.message


def _tls_files(directory: Path) -> dict[str, Path]:
    """A test CA and a server certificate for 127.0.0.1, made here with openssl."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=voice2fa test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (directory / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.crt",
        "-days", "1", "-extfile", "ext")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.crt", "-days", "1",
        "-subj", "/CN=another CA")
    return {name: directory / name for name in ("ca.crt", "srv.crt", "srv.key", "other.crt")}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_with_the_right_ca_works_and_a_wrong_certificate_is_refused(tmp_path, key):
    files = _tls_files(tmp_path)
    port = free_port()
    srv = RedisServer(tmp_path, extra=[
        "--tls-port", str(port), "--tls-cert-file", str(files["srv.crt"]), "--tls-key-file", str(files["srv.key"]),
        "--tls-ca-cert-file", str(files["ca.crt"]), "--tls-auth-clients", "no",
    ]).start()
    try:
        url = f"rediss://127.0.0.1:{port}/0"
        with RedisStore.open(url, key, ssl_ca_certs=str(files["ca.crt"]), clock=lambda: T0) as store:
            add(store)
            assert store.check(NUMBER, CODE).verified
        with pytest.raises(StoreError) as info:
            RedisStore.open(url, key, ssl_ca_certs=str(files["other.crt"]), timeout=2)
        assert info.value.message.startswith(f"the store {url} cannot be reached: ")
        assert "certificate verify failed" in info.value.message
    finally:
        srv.stop()


def test_a_restart_loses_nothing_acknowledged_with_aof(tmp_path, key):
    srv = RedisServer(tmp_path, appendonly=True).start()
    try:
        store = RedisStore.open(srv.url, key, timeout=0.5, clock=lambda: T0)
        add(store)
        for _ in range(3):
            store.check(NUMBER, "000000")
        srv.stop()
        with pytest.raises(StoreError, match="cannot be reached"):
            store.check(NUMBER, CODE)  # a clean error, counting nothing
        srv.start()
        after = RedisStore.open(srv.url, key, timeout=2, clock=lambda: T0)
        verdict = after.check(NUMBER, CODE)
        assert verdict.verified and verdict.session.attempts == 3
    finally:
        srv.stop()


# --- Cluster: the keys one script touches share a slot ----------------------------------------


@pytest.mark.parametrize("number", [NUMBER, "+447700900123", "+81312345678"])
@pytest.mark.parametrize("sandbox", [False, True])
def test_the_keys_of_a_number_share_one_cluster_slot(url, key, number, sandbox):
    from redis.crc import key_slot

    with RedisStore.open(url, key, sandbox=sandbox, clock=lambda: T0) as store:
        keys = store.layout.number_keys(number)
        assert len({key_slot(k.encode()) for k in keys}) == 1
        add(store, number=number)
        store.check(number, "000000")
        store.reserve_call(number, 30)
    tagged = [k for k in raw(url).keys("*") if b"{" + number.encode() + b"}" in k]
    assert set(tagged) == {k.encode() for k in keys}
    prefix = (PREFIX + ("sandbox:" if sandbox else "")).encode()
    assert all(k.startswith(prefix) for k in tagged)


def test_every_key_expires_by_itself(url, key):
    with RedisStore.open(url, key, clock=lambda: T0) as store:
        add(store)
        store.check(NUMBER, "000000")
        store.reserve_call(NUMBER, 30)
    r = raw(url)
    lasting = {k for k in r.keys("*") if r.pttl(k) == -1}
    # Only the key fingerprint and the listing index (trimmed to its newest entries) have no TTL.
    assert lasting == {b"voice2fa:meta", b"voice2fa:{recent}:z", b"voice2fa:{recent}:seq"}


# --- a real Redis Cluster -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed")
    from tests.redis_server import RedisCluster

    c = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield c
    c.stop()


def test_the_store_works_on_a_redis_cluster(cluster, key):
    from redis.cluster import RedisCluster

    numbers = [f"+1555{i:07d}" for i in range(12)]
    with RedisStore.open(cluster.url, key, clock=lambda: T0) as store:
        assert store.cluster  # one node named: the whole cluster is used
        for i, number in enumerate(numbers):
            store.reserve_call(number, 100)
            add(store, f"s{i}", number=number, code=f"{700000 + i}")
        assert [s.id for s in store.recent(limit=100)] == [f"s{i}" for i in reversed(range(12))]
        for i, number in enumerate(numbers):
            assert store.check(number, "000000").reason == "wrong code (4 attempts left)"
            assert store.check(number, f"{700000 + i}").verified
        store.purge()
    nodes = RedisCluster.from_url(cluster.url)
    owners = {nodes.get_node_from_key(f"{PREFIX}{{{n}}}:h").port for n in numbers}
    nodes.close()
    assert len(owners) > 1, "the numbers land on several nodes"


# --- the asyncio store (voice2fa serve's event loop): the same answers and failures -------------


def on_loop(store: RedisStore, work):
    """`await work(aio)` with the store's asyncio twin, on a loop of its own."""
    import asyncio

    async def go():
        from voice2fa_cli.stores.redis_async import AsyncRedisStore

        aio = AsyncRedisStore.like(store)
        try:
            return await work(aio)
        finally:
            await aio.aclose()

    return asyncio.run(go())


def test_the_asyncio_store_tells_live_records_on_the_servers_clock(url, key):
    store = RedisStore.open(url, key)  # no test clock: the server's TIME decides

    async def work(aio):
        await aio.put_record("verification", "gone", {"n": 1}, ttl=-1)
        await aio.put_record("verification", "live", {"n": 2}, ttl=3600)
        return [await aio.get_record("verification", i) for i in ("gone", "live", "never")]

    assert on_loop(store, work) == [None, {"n": 2}, None]
    assert [store.get_record("verification", i) for i in ("gone", "live", "never")] == [None, {"n": 2}, None]


def test_the_asyncio_store_fails_closed_in_one_line_when_the_server_goes_down(tmp_path, key):
    store, url = store_whose_server_stopped(tmp_path, key)

    async def work(aio):
        return await aio.check(NUMBER, CODE, "s1")

    with pytest.raises(StoreError) as info:
        on_loop(store, work)
    assert info.value.message.startswith(f"the store {url} cannot be reached: ")
    assert "\n" not in info.value.message


def test_the_asyncio_store_times_out_as_the_sync_one(url, key):
    store = RedisStore.open(url, key, timeout=0.2, clock=lambda: T0)

    async def work(aio):
        await aio.get_record("verification", "warm")  # connected, as the sync store is once open
        raw(url).execute_command("CLIENT", "PAUSE", "1500", "ALL")
        return await aio.check(NUMBER, CODE)

    try:
        with pytest.raises(StoreError) as info:
            on_loop(store, work)
    finally:
        raw(url).execute_command("CLIENT", "UNPAUSE")
    assert info.value.message == f"the store {url} did not answer in time: is the server overloaded or unreachable?"


def test_a_check_through_the_pending_record_checks_the_session_it_names_now(url, key):
    """check_pending (a check by `To` in one round trip) guesses the session the record names;
    a resend names another session: the stale guess must not check the old one, or miss the new."""
    store = RedisStore.open(url, key)  # the server's clock
    add(store, "s1", code="111111")

    async def work(aio):
        out = [await aio.check_pending("pending", "svc:n", NUMBER, "111111", "")]  # no record yet
        await aio.put_record("pending", "svc:n", {"status": "pending", "to": NUMBER, "session": "s1"}, ttl=600)
        for code in ("000000", "000000"):  # first: no guess yet; second: guessed right
            record, v = await aio.check_pending("pending", "svc:n", NUMBER, code, "")
            out.append((record["session"], v.verified, v.attempts_left, v.session.id))
        add(store, "s2", code="222222")  # a resend: s1 superseded, the record names s2
        await aio.put_record("pending", "svc:n", {"status": "pending", "to": NUMBER, "session": "s2"}, ttl=600)
        record, v = await aio.check_pending("pending", "svc:n", NUMBER, "222222", "")  # the guess (s1) is stale
        out.append((record["session"], v.verified, v.session.id))
        await aio.put_record("pending", "svc:n", {"status": "approved", "to": NUMBER, "session": "s2"}, ttl=600)
        out.append(await aio.check_pending("pending", "svc:n", NUMBER, "222222", ""))
        await aio.put_record("pending", "svc:n", {"status": "pending", "to": NUMBER, "session": "s2"}, ttl=-1)
        out.append(await aio.check_pending("pending", "svc:n", NUMBER, "222222", ""))  # past its life
        return out

    assert on_loop(store, work) == [None, ("s1", False, 4, "s1"), ("s1", False, 3, "s1"), ("s2", True, "s2"),
                                    None, None]
    assert store.get("s1").state == "superseded" and store.get("s2").state == "verified"


def time_calls(url) -> int:
    """How many TIME commands the server has run (its command statistics)."""
    return int(raw(url).info("commandstats").get("cmdstat_time", {}).get("calls", 0))


def test_writes_read_the_servers_clock_once_in_a_while_not_at_every_write(url, key):
    """A record's end of life is on the server's clock; a reading of it stands for clock_fresh
    seconds (carried forward on the monotonic clock), so writes make no TIME round trip each.
    (The server's count of TIME includes the scripts' own: the same writes are counted with
    every reading stale, and the difference is the round trips.)"""
    store = RedisStore.open(url, key)  # no test clock: the server's TIME decides

    async def writes(aio, tag: str) -> int:
        before = time_calls(url)
        for i in range(20):
            await aio.put_record("verification", f"{tag}{i}", {"n": i}, ttl=3600)
            await aio.swap_record("verification", f"{tag}{i}", {"n": i, "rev": 1}, rev=0, ttl=3600)
        return time_calls(url) - before

    async def work(aio):
        await aio.put_record("verification", "first", {"n": 0}, ttl=3600)  # reads the clock
        fresh = await writes(aio, "f")
        await aio.put_record("verification", "gone", {"n": 1}, ttl=-1)
        aio.layout.clock_fresh = 0.0  # every reading stale at once: each write reads the clock
        stale = await writes(aio, "s")
        return fresh, stale, [await aio.get_record("verification", i) for i in ("f19", "gone", "s19")]

    fresh, stale, found = on_loop(store, work)
    assert stale - fresh == 40
    assert found == [{"n": 19, "rev": 1}, None, {"n": 19, "rev": 1}]
    ttl_ms = raw(url).pttl(store.layout.record_keys("verification", "f19")[0])
    assert 3600_000 < ttl_ms  # Redis keeps it past its end of life (RETAIN), and the life is the hour asked


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)


@given(st.dictionaries(st.text(max_size=10), _json, max_size=6), st.one_of(st.none(), st.floats(0, 4e9)))
def test_a_records_envelope_is_the_canonical_json_of_its_parts_and_opens_anywhere(body, expires):
    """The envelope is built from its signed part's text (the MAC appended, as canonical JSON
    sorts it last): it must be exactly the canonical form another instance checks."""
    from voice2fa_cli.stores.redis_keys import Layout, canonical

    key = bytes(range(32))
    text = Layout(key, "redis://h", sandbox=False, clock=None).envelope("voice2fa:{rec:x}:1", body, expires)
    assert text == canonical(json.loads(text))
    fresh = Layout(key, "redis://h", sandbox=False, clock=None)  # remembers nothing: checks the MAC
    assert fresh.opened("voice2fa:{rec:x}:1", text) == {"body": body, "expires_at": expires}
    with pytest.raises(StoreError):
        fresh.opened("voice2fa:{rec:x}:2", text)  # bound to its key
