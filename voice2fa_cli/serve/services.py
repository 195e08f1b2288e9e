"""Twilio Verify v2's Services resource on `voice2fa serve`: create, list, fetch, update and
delete, over the service records the CLI's `voice2fa services` also makes; and the lookup of a
request's service (cached for a few seconds, so an update or a delete reaches every instance
within CACHE_SECONDS).

Who may do what: any key lists and fetches the services it reaches; only an admin key (`voice2fa
keys create NAME --admin`, account-wide) creates, updates and deletes them (else 20403).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from voice2fa_cli.serve import locales, params, records, shapes
from voice2fa_cli.serve.shapes import ApiError

if TYPE_CHECKING:
    from voice2fa_cli.stores.base import AsyncSessionStore

CACHE_SECONDS = 5.0
MAX_CACHE = 1024
DEFAULT_PAGE_SIZE = 50
# A ServiceOptions field → the request parameter that sets it (Twilio's, or voice2fa's own)
FIELDS = {"code_length": "CodeLength", "keypress": "DtmfInputRequired", "voice": "TtsName",
          "custom_code": "CustomCodeEnabled", "ttl": "Voice2fa.Ttl", "language": "Voice2fa.Language",
          "max_calls_per_hour": "Voice2fa.MaxCallsPerHour", "friendly_name": "Voice2fa.FriendlyNameAllowed",
          "custom_message": "Voice2fa.CustomMessageAllowed", "message": "Voice2fa.Message",
          "callback_url": "Voice2fa.CallbackUrl", "callback_private": "Voice2fa.CallbackPrivate"}
# voice2fa's settings of a service that Twilio's resource has no parameter for
EXTENSIONS = {
    "Voice2fa.Ttl": params.Rule("integer"), "Voice2fa.Language": params.STRING,
    "Voice2fa.MaxCallsPerHour": params.Rule("integer"), "Voice2fa.FriendlyNameAllowed": params.BOOLEAN,
    "Voice2fa.CustomMessageAllowed": params.BOOLEAN, "Voice2fa.Message": params.STRING,
    "Voice2fa.CallbackUrl": params.STRING, "Voice2fa.CallbackPrivate": params.BOOLEAN,
}
# voice2fa's settings that a present but empty value clears (back to none: no callback, the
# default opening sentence); any other empty value leaves its setting as it is
CLEARABLE = ("callback_url", "message")
FORBIDDEN = ("this API key cannot manage services: make one that can with `voice2fa keys create NAME --admin`")


def _not_found(sid: str) -> ApiError:
    return ApiError(20404, f"The requested resource /Services/{sid[:40]} was not found")


def _options(form: Mapping[str, str], base: records.ServiceOptions) -> records.ServiceOptions:
    """`base` with what the form sets (validated already)."""
    changes: dict[str, object] = {}
    for field, name in FIELDS.items():
        value = form.get(name)
        if value == "" and field in CLEARABLE:
            changes[field] = None
        if value is None or value == "":
            continue
        rule = params.SERVICE.get(name) or EXTENSIONS[name]
        changes[field] = (value.lower() == "true" if rule.type == "boolean"
                          else int(value) if rule.type == "integer"
                          else locales.language(value) if field == "language" else value)
    return replace(base, **changes)  # type: ignore[arg-type]


class Services:
    def __init__(self, creds: AsyncSessionStore, api_url: str) -> None:
        self.creds = creds
        self.api_url = api_url
        self.account = ""  # set by the core once it started
        self._cache: dict[str, tuple[float, records.Service | None]] = {}

    async def lookup(self, sid: str, key: records.ApiKey) -> records.Service:
        """The service `key` reaches (a service it is not scoped to is not found, as another
        account's would be on Twilio)."""
        if not key.reaches(sid):
            raise _not_found(sid)
        now = time.monotonic()
        cached = self._cache.get(sid)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            service = cached[1]
        else:
            body = await self.creds.get_record(records.SERVICE, sid) if records.is_service_sid(sid) else None
            found = records.Service.of(body) if body else None
            service = None if found is None or found.deleted else found
            if found is not None:  # a service, or its tombstone (unknown SIDs are not kept: they could fill it)
                if len(self._cache) >= MAX_CACHE:
                    self._cache.clear()
                self._cache[sid] = (now, service)
        if service is None:
            raise _not_found(sid)
        return service

    async def _shape(self, service: records.Service, key: records.ApiKey) -> dict:
        """The resource; to an admin key, with the secret the service's events are signed with."""
        shaped = shapes.service(service.body(), self.account, self.api_url)
        if key.admin and service.callback_url is not None:
            derived = await self.creds.derive_key(records.callback_label(service.sid))
            shaped["voice2fa"]["callback_secret"] = records.callback_secret(derived)
        return shaped

    @staticmethod
    def _admin(key: records.ApiKey) -> None:
        if not key.admin:
            raise ApiError(20403, FORBIDDEN)

    @staticmethod
    def _checked(form: Mapping[str, str], *, creating: bool) -> None:
        params.validate(form, params.SERVICE, creating=creating)
        params.validate(form, EXTENSIONS, creating=creating)
        if creating and not form.get("FriendlyName"):
            raise ApiError(60200, "Invalid parameter: FriendlyName is required")

    @staticmethod
    def _refused(exc: ValueError) -> ApiError:
        name = FIELDS[exc.field] if isinstance(exc, records.OptionsError) else "FriendlyName"
        return ApiError(60200, f"Invalid parameter `{name}`: {exc}")

    async def create(self, form: Mapping[str, str], key: records.ApiKey) -> dict:
        self._admin(key)
        self._checked(form, creating=True)
        try:
            service = records.new_service(form["FriendlyName"], _options(form, records.ServiceOptions()))
        except ValueError as exc:
            raise self._refused(exc) from None
        await self.creds.put_record(records.SERVICE, service.sid, service.body(), only_new=True)
        return await self._shape(service, key)

    async def fetch(self, sid: str, key: records.ApiKey) -> dict:
        return await self._shape(await self.lookup(sid, key), key)

    async def update(self, sid: str, form: Mapping[str, str], key: records.ApiKey) -> dict:
        self._admin(key)
        self._checked(form, creating=False)
        self._cache.pop(sid, None)
        service = await self.lookup(sid, key)
        try:
            service = records.changed(service, form.get("FriendlyName") or None,
                                      _options(form, records.ServiceOptions.of(service)))
        except ValueError as exc:
            raise self._refused(exc) from None
        await self.creds.put_record(records.SERVICE, sid, service.body())
        self._cache[sid] = (time.monotonic(), service)
        return await self._shape(service, key)

    async def delete(self, sid: str, key: records.ApiKey) -> None:
        """A tombstone: the service answers 20404 from now on (on other instances within
        CACHE_SECONDS), and so do its verifications."""
        self._admin(key)
        self._cache.pop(sid, None)
        service = await self.lookup(sid, key)
        await self.creds.put_record(records.SERVICE, sid, replace(service, deleted=True, updated=time.time()).body())
        self._cache[sid] = (time.monotonic(), None)

    async def list(self, query: Mapping[str, str], key: records.ApiKey) -> dict:
        params.validate(query, params.PAGE)
        size = int(query.get("PageSize") or DEFAULT_PAGE_SIZE)
        number = int(query.get("Page") or 0)
        services = [s for s in records.listed(await self.creds.list_records(records.SERVICE)) if key.reaches(s.sid)]
        items = [await self._shape(s, key) for s in services[number * size:(number + 1) * size]]
        return shapes.page("services", items, f"{self.api_url}/v2/Services", number, size, len(services))
