"""Calls in the shared store, so that several `voice2fa serve` instances answer the platform
with no sticky sessions: a webhook request for a call another instance placed still reads the
right code, and status callbacks reaching any instance update the call.

Each call's state (its code, the gate's key, the voice, reads left, what happened) is one record
of kind "call", sealed (sealed.py) under a key derived from the store's HMAC key, which Redis
never holds; its id is an HMAC of the call's token (the token, a capability, is not stored
either). Updates are compare-and-set on the record's `rev`, which is sealed with the state: each
instance remembers the newest revision of each call it has seen and never serves an older one,
so an old record written back by a writer of Redis does not give back the reads it used. The
instance that placed the call keeps a mirror for its follower (flow._Follower) and syncs it with
the store."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re

from voice2fa_cli.errors import StoreError
from voice2fa_cli.serve.sealed import Sealer, SealError
from voice2fa_cli.stores.base import AsyncSessionStore
from voice2fa_cli.voice import speech
from voice2fa_cli.voice.call import CallState

KIND = "call"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAX_SEEN = 10_000  # calls whose newest revision an instance remembers (the oldest are forgotten)
_FIELDS = ("session_id", "code", "key", "call_sid", "status", "sequence", "fetched", "delivered", "wrong_keys",
           "code_reads", "hung_up", "duration")


def state(call: CallState) -> dict:
    out = {name: getattr(call, name) for name in _FIELDS}
    voice = call.voice
    out["voice"] = {"language": voice.language, "voice": voice.voice, "intro": voice.intro, "caller": voice.caller}
    return out


def from_state(token: str, data: dict) -> CallState:
    call = CallState(session_id=data["session_id"], code=data["code"], voice=speech.Voice(**data["voice"]),
                     key=data["key"], token=token)
    for name in _FIELDS[3:]:
        setattr(call, name, data[name])
    return call


def merge(local: CallState, seen: CallState) -> None:
    """What another request (on any instance) did to the call, into the placing instance's
    mirror, as the events the follower waits for."""
    if seen.call_sid and not local.call_sid:
        local.call_sid = seen.call_sid
    local.wrong_keys = max(local.wrong_keys, seen.wrong_keys)
    local.sequence = max(local.sequence, seen.sequence)  # the mirror knows every field as new as the store's
    local.code_reads = max(local.code_reads, seen.code_reads)
    if seen.fetched and not local.fetched:
        local.fetched = True
        local.note("fetched")
    if seen.delivered and not local.delivered:
        local.delivered = True
        local.note("delivered")
    if seen.hung_up:
        local.hung_up = True
    if seen.status != local.status:
        local.set_status(seen.status, duration=seen.duration)
    elif seen.duration is not None and local.duration is None:
        local.duration = seen.duration


class StoredCalls:
    """webhook.SharedCalls on the store (an AsyncSessionStore)."""

    def __init__(self, store: AsyncSessionStore, master: bytes, id_key: bytes, local: dict, ttl: float) -> None:
        self.store = store
        self.sealer = Sealer(master)
        self.id_key = id_key
        self.local = local  # the webhook app's CALLS: this instance's mirrors, by token
        self.ttl = ttl
        self.seen: dict[str, int] = {}  # record id → the newest revision seen here
        # record id → the revision this instance's mirror of the call is in step with (it saved
        # that revision from the mirror, or merged it into the mirror)
        self.in_step: dict[str, int] = {}

    @classmethod
    async def open(cls, store: AsyncSessionStore, local: dict, ttl: float) -> StoredCalls:
        master = await store.derive_key(b"serve call seal v1")
        id_key = await store.derive_key(b"serve call id v1")
        return cls(store, master, id_key, local, ttl)

    def record_id(self, token: str) -> str:
        return hmac.new(self.id_key, token.encode(), hashlib.sha256).hexdigest()[:40]

    @staticmethod
    def _aad(rid: str, rev: int) -> bytes:
        return f"{rid}\x00{rev}".encode()

    def _saw(self, rid: str, rev: int) -> None:
        self.seen.pop(rid, None)
        self.seen[rid] = rev
        if len(self.seen) > MAX_SEEN:
            del self.seen[next(iter(self.seen))]

    def _stepped(self, rid: str, rev: int) -> None:
        self.in_step.pop(rid, None)
        self.in_step[rid] = rev
        if len(self.in_step) > MAX_SEEN:
            del self.in_step[next(iter(self.in_step))]

    def guess(self, token: str) -> tuple[CallState, int] | None:
        """A copy of this instance's mirror of the call and its revision, when the mirror is in
        step with the newest revision seen here: a request's answer is worked out on it and
        saved in one round trip. If another instance changed the call since, the save (a
        compare-and-set) fails and the request loads the record, as without a guess."""
        local = self.local.get(token)
        if local is None or not _TOKEN.fullmatch(token):
            return None
        rid = self.record_id(token)
        rev = self.in_step.get(rid)
        if rev is None or rev != self.seen.get(rid):
            return None
        return from_state(token, state(local)), rev

    async def load(self, token: str) -> tuple[CallState, int] | None:
        if not _TOKEN.fullmatch(token):
            return None
        return await self._load(self.record_id(token), token)

    async def _load(self, rid: str, token: str) -> tuple[CallState, int] | None:
        body = await self.store.get_record(KIND, rid)
        if body is None:
            return None
        try:
            rev = int(body["rev"])
            data = json.loads(self.sealer.unseal(self._aad(rid, rev), base64.b64decode(body["blob"])))
        except (SealError, ValueError, KeyError, TypeError):
            return None  # altered, or sealed under another key: as good as absent
        if rev < self.seen.get(rid, 0):
            return None  # older than what this instance saw: written back, never served again
        self._saw(rid, rev)
        return from_state(token, data), rev

    async def save(self, token: str, call: CallState, rev: int) -> bool:
        """Compare and set; once saved, the mirror is in step with it (every caller saves the
        mirror itself or merges what it saved into the mirror)."""
        rid = self.record_id(token)
        saved = await self._save(rid, call, rev)
        if saved:
            self._stepped(rid, rev + 1)
        return saved

    async def _save(self, rid: str, call: CallState, rev: int) -> bool:
        blob = self.sealer.seal(self._aad(rid, rev + 1), json.dumps(state(call), separators=(",", ":")).encode())
        saved = await self.store.swap_record(KIND, rid, {"rev": rev + 1, "blob": base64.b64encode(blob).decode()},
                                             rev=rev, ttl=self.ttl)
        if saved:
            self._saw(rid, rev + 1)
        return saved

    async def hang_up(self, rid: str) -> None:
        """From any instance (a cancel): no document is served any more, and the instance that
        placed the call hangs it up when it next syncs."""
        for _ in range(5):
            loaded = await self._load(rid, "")
            if loaded is None or loaded[0].hung_up:
                return
            call, rev = loaded
            call.hung_up = True
            if await self._save(rid, call, rev):
                return

    def merge(self, token: str, seen: CallState) -> None:
        local = self.local.get(token)
        if local is not None and local is not seen:
            merge(local, seen)

    async def publish(self, call: CallState) -> None:
        """The new call's state, before it is dialed."""
        if not await self.save(call.token, call, 0):
            raise RuntimeError("a call token was reused")

    async def sync(self, call: CallState) -> bool:
        """The store's state into the mirror; what only the placing instance knows (the call's
        SID, that it hung up) into the store. True when the call was hung up elsewhere (a cancel
        on another instance) and not here yet."""
        for _ in range(5):
            loaded = await self.load(call.token)
            if loaded is None:
                return False
            seen, rev = loaded
            elsewhere = seen.hung_up and not call.hung_up and not call.ended
            merge(call, seen)
            if (seen.call_sid or not call.call_sid) and (seen.hung_up or not call.hung_up):
                self._stepped(self.record_id(call.token), rev)
                return elsewhere
            seen.call_sid = seen.call_sid or call.call_sid
            seen.hung_up = seen.hung_up or call.hung_up
            if await self.save(call.token, seen, rev):
                return elsewhere
        return False

    async def follow(self, call: CallState, interval: float, on_hung_up) -> None:
        """Sync every `interval` seconds while the call is followed (cancelled at its end);
        `on_hung_up()` when another instance hung it up."""
        while True:
            await asyncio.sleep(interval)
            try:
                hung_up = await self.sync(call)
            except StoreError:
                continue  # the store is away: the call goes on, and flow tells of it when it records
            if hung_up:
                on_hung_up()
