"""serve's Services resource, driven by the official `twilio` SDK (create, fetch, list, update,
delete, for an admin key), a service's settings reaching the call (code length, DTMF input,
TTS voice, custom codes), and the account SID a deployment keeps."""

from __future__ import annotations

import asyncio
import json
import os
import re

import aiohttp
import pytest

from tests import twilio_spec
from tests.helpers import NUMBER, run_cli
from tests.serve_helpers import ServeThread, basic, client_for, env, server, setup, twilio_error, verify  # noqa: F401
from voice2fa_cli.serve import records
from voice2fa_cli.serve.core import ACCOUNT_LABEL
from voice2fa_cli.stores import open_store
from voice2fa_cli.stores.base import StoreSpec

FORBIDDEN = ("this API key cannot manage services: make one that can with `voice2fa keys create NAME --admin`")


@pytest.fixture
def admin_key(state_dir) -> tuple[str, str]:
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        key, secret = records.create_key(store, "ops", admin=True)
    return key.sid, secret


@pytest.fixture
def admin(server, admin_key):
    return client_for(server, *admin_key).verify.v2


async def raw(server, admin_key, method: str, path: str, **kwargs) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers=basic(*admin_key)) as http:
        async with http.request(method, f"{server.api_url}{path}", **kwargs) as r:
            return r.status, await r.json()


def test_an_admin_key_creates_fetches_lists_updates_and_deletes_services_with_the_sdk(server, admin, state_dir):
    created = admin.services.create(friendly_name="Acme login", code_length=8, dtmf_input_required=False,
                                    tts_name="Polly.Joanna", custom_code_enabled=True)
    assert re.fullmatch(r"VA[0-9a-f]{32}", created.sid)
    assert (created.friendly_name, created.code_length, created.dtmf_input_required, created.tts_name,
            created.custom_code_enabled) == ("Acme login", 8, False, "Polly.Joanna", True)
    assert created.url == f"{server.api_url}/v2/Services/{created.sid}"
    assert admin.services(created.sid).fetch().friendly_name == "Acme login"
    assert created.sid in [s.sid for s in admin.services.list()]
    updated = admin.services(created.sid).update(friendly_name="Acme", code_length=6, dtmf_input_required=True)
    assert (updated.friendly_name, updated.code_length, updated.dtmf_input_required, updated.tts_name) == (
        "Acme", 6, True, "Polly.Joanna")
    with open_store(StoreSpec(state_dir=state_dir)) as store:  # what the CLI sees
        stored = records.get_service(store, created.sid)
    assert (stored.name, stored.code_length, stored.keypress, stored.voice, stored.custom_code) == (
        "Acme", 6, True, "Polly.Joanna", True)
    assert admin.services(created.sid).delete() is True
    err = twilio_error(lambda: admin.services(created.sid).fetch())
    assert (err.code, err.status) == (20404, 404)
    assert created.sid not in [s.sid for s in admin.services.list()]
    err = twilio_error(lambda: admin.services(created.sid).verifications.create(to=NUMBER, channel="call"))
    assert (err.code, err.status) == (20404, 404)
    assert server.serving.sandbox.calls == {}
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        assert records.get_service(store, created.sid) is None
    listed = run_cli(["services", "list"], {**os.environ, "VOICE2FA_STATE_DIR": str(state_dir)}).stdout
    assert created.sid not in listed


def test_a_key_without_admin_reads_the_services_it_reaches_and_changes_none(server, verify, setup, state_dir):
    service, key, secret = setup
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        other = records.create_service(store, "Other")
        scoped, scoped_secret = records.create_key(store, "scoped", (service.sid,))
    plain = client_for(server, key.sid, secret).verify.v2
    assert {s.sid for s in plain.services.list()} == {service.sid, other.sid}
    assert plain.services(service.sid).fetch().friendly_name == "Acme"
    for call in (lambda: plain.services.create(friendly_name="Mine"),
                 lambda: plain.services(service.sid).update(friendly_name="Mine"),
                 lambda: plain.services(service.sid).delete()):
        err = twilio_error(call)
        assert (err.code, err.status) == (20403, 403)
        assert err.msg.endswith(FORBIDDEN), err.msg
    limited = client_for(server, scoped.sid, scoped_secret).verify.v2
    assert [s.sid for s in limited.services.list()] == [service.sid]
    err = twilio_error(lambda: limited.services(other.sid).fetch())
    assert (err.code, err.status) == (20404, 404)
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        assert records.get_service(store, service.sid).name == "Acme"


def test_keys_create_admin_and_service_exclude_each_other(env, setup):
    service, _, _ = setup
    full = {**os.environ, **env}
    made = run_cli(["keys", "create", "ops", "--admin"], full)
    assert made.returncode == 0 and json.loads(made.stdout)["admin"] is True
    both = run_cli(["keys", "create", "ops", "--admin", "--service", service.sid], full)
    assert both.returncode == 2
    assert "an admin key manages every service: give --admin or --service, not both" in both.stderr
    listed = [json.loads(line) for line in run_cli(["keys", "list"], full).stdout.splitlines()]
    assert [k["admin"] for k in listed] == [False, True]


@pytest.mark.parametrize(("fields", "message"), [
    ({"FriendlyName": "x", "CodeLength": "4"}, "Invalid parameter `CodeLength`: the code length must be from 6 to 10 "
                                               "digits (NIST SP 800-63B asks for at least 6), not 4"),
    ({"FriendlyName": "x", "CodeLength": "six"}, "Invalid parameter `CodeLength`: a whole number"),
    ({"FriendlyName": "x", "DtmfInputRequired": "yes"}, "Invalid parameter `DtmfInputRequired`: true or false"),
    ({"FriendlyName": "x", "DefaultTemplateSid": "HJ1"},
     "Invalid parameter `DefaultTemplateSid`: HJ followed by 32 hexadecimal digits"),
    ({"FriendlyName": "x", "TtsName": "Polly.Nobody"},
     "Invalid parameter `TtsName`: --voice Polly.Nobody: voice2fa cannot tell which language it speaks; give "
     "--language too (one of en-US, en-GB, en-IN, en-AU, en-CA, de-DE, es-ES, it-IT, fr-FR)"),
    ({"FriendlyName": "x", "Voice2fa.Ttl": "9999"}, "Invalid parameter `Voice2fa.Ttl`: the TTL must be from 30 to "
                                                    "600 seconds"),
    ({"FriendlyName": "<b>\x07"}, "Invalid parameter `FriendlyName`: the service name must be printable text of "
                                  "1 to 64 characters"),
    ({"CodeLength": "6"}, "Invalid parameter: FriendlyName is required"),
])
def test_a_service_the_spec_or_voice2fa_refuses_is_60200_and_nothing_is_stored(server, admin_key, state_dir, fields,
                                                                               message):
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        before = records.list_services(store)
    status, body = asyncio.run(raw(server, admin_key, "POST", "/v2/Services", data=fields))
    assert (status, body["code"], body["message"]) == (400, 60200, message)
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        assert records.list_services(store) == before


def test_voice2fas_own_settings_are_set_and_shown_under_voice2fa(server, admin_key):
    status, body = asyncio.run(raw(server, admin_key, "POST", "/v2/Services", data={
        "FriendlyName": "Acme", "Voice2fa.Ttl": "300", "Voice2fa.Language": "fr", "Voice2fa.MaxCallsPerHour": "20",
        "Voice2fa.CustomMessageAllowed": "true", "Voice2fa.FriendlyNameAllowed": "false",
        "Voice2fa.Message": "Bonjour."}))
    assert status == 201
    assert body["voice2fa"] == {"ttl": 300, "language": "fr-FR", "max_calls_per_hour": 20,
                                "friendly_name_allowed": False, "custom_message_allowed": True, "message": "Bonjour.",
                                "callback_url": None, "callback_private": False}


def test_the_service_resource_and_its_list_match_the_specs_schemas(server, admin, admin_key):
    created = admin.services.create(friendly_name="Acme")
    fetched = asyncio.run(raw(server, admin_key, "GET", f"/v2/Services/{created.sid}"))
    listed = asyncio.run(raw(server, admin_key, "GET", "/v2/Services", params={"PageSize": "1"}))
    bad = asyncio.run(raw(server, admin_key, "GET", "/v2/Services", params={"PageSize": "0"}))
    body = {k: v for k, v in fetched[1].items() if k != "voice2fa"}  # voice2fa's own, documented extension
    twilio_spec.response_validator("/v2/Services/{Sid}", "get", 200).validate(body)
    page = {**listed[1], "services": [{k: v for k, v in s.items() if k != "voice2fa"} for s in listed[1]["services"]]}
    twilio_spec.response_validator("/v2/Services", "get", 200).validate(page)
    assert listed[1]["meta"]["page_size"] == 1 and listed[1]["meta"]["next_page_url"].endswith("PageSize=1&Page=1")
    assert (bad[0], bad[1]["message"]) == (400, "Invalid parameter `PageSize`: from 1 to 1000")


def test_the_sdk_pages_through_every_service(server, admin, setup):
    made = {admin.services.create(friendly_name=f"S{i}").sid for i in range(5)}
    assert made | {setup[0].sid} == {s.sid for s in admin.services.list(page_size=2)}


def test_a_custom_code_is_60204_unless_the_service_enables_it_then_it_is_what_the_call_reads(server, admin, verify,
                                                                                             state_dir):
    err = twilio_error(lambda: verify.verifications.create(to=NUMBER, channel="call", custom_code="48151623"))
    assert (err.code, err.status) == (60204, 400)
    assert err.msg.endswith("Custom code not allowed: this service does not enable custom codes (CustomCodeEnabled)")
    assert server.serving.sandbox.calls == {}
    service = admin.services.create(friendly_name="Custom", custom_code_enabled=True)
    enabled = admin.services(service.sid)
    for bad in ("12345", "12345678901", "12a456"):
        err = twilio_error(lambda: enabled.verifications.create(to=NUMBER, channel="call", custom_code=bad))
        assert (err.code, err.msg.split(": ", 1)[1]) == (60200, "Invalid parameter `CustomCode`: 6 to 10 digits")
    created = enabled.verifications.create(to=NUMBER, channel="call", custom_code="48151623")
    assert server.heard() == "48151623"
    with open_store(StoreSpec(state_dir=state_dir), sandbox=True) as store:  # only its keyed hash is stored
        session = store.newest(NUMBER, service.sid)
        assert "48151623" not in json.dumps(store.get_record(records.VERIFICATION, created.sid))
    assert "48151623" not in repr(session)
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert b"48151623" not in path.read_bytes()
    assert enabled.verification_checks.create(to=NUMBER, code="48151623").status == "approved"


def test_a_services_dtmf_setting_and_voice_reach_the_call(server, admin):
    service = admin.services.create(friendly_name="NoGate", dtmf_input_required=False, tts_name="Polly.Joanna")
    admin.services(service.sid).verifications.create(to=NUMBER, channel="call")
    server.heard()
    first = list(server.serving.sandbox.calls.values())[0]
    assert first.pressed == []  # no key asked for: the code is read at once
    documents = b"".join(first.documents).decode()
    assert 'voice="Polly.Joanna"' in documents
    # a Locale the voice does not speak: the standard voice of that language
    admin.services(service.sid).verifications.create(to="+15557654321", channel="call", locale="fr")
    server.heard(2)
    call = list(server.serving.sandbox.calls.values())[1]
    second = b"".join(call.documents).decode()
    assert 'language="fr-FR"' in second and "Polly.Joanna" not in second


def test_the_account_sid_is_the_deployments_the_same_after_a_restart(env, setup, state_dir):
    service, key, secret = setup
    sids = []
    for _ in range(2):
        s = ServeThread(env, linger=0.5, drain=5)
        try:
            created = client_for(s, key.sid, secret).verify.v2.services(service.sid).verifications.create(
                to=NUMBER, channel="call")
            sids.append(created.account_sid)
            s.heard()
        finally:
            s.stop()
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        derived = "AC" + store.derive_key(ACCOUNT_LABEL)[:16].hex()
    assert sids == [derived, derived]
