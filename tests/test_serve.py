"""`voice2fa serve`, driven by the official `twilio` package (its Verify v2 client pointed at the
API listener), with the sandbox in place of the platform."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time

import aiohttp
import pytest

from tests import twilio_verify as facts
from tests.helpers import FAST, NUMBER
from tests.serve_helpers import ServeThread, basic, client_for, env, server, setup, twilio_error, verify  # noqa: F401
from voice2fa_cli.serve import records
from voice2fa_cli.serve.log import CallReporter, Log
from voice2fa_cli.stores import open_store
from voice2fa_cli.stores.base import StoreSpec
from voice2fa_cli.web.server import bind

OTHER = "+15557654321"


def test_create_hear_check_approved_then_fetch_is_20404(server, verify, setup):
    service, _, _ = setup
    created = verify.verifications.create(to=NUMBER, channel="call")
    assert (created.status, created.valid, created.channel, created.to) == ("pending", False, "call", NUMBER)
    assert created.service_sid == service.sid
    for name, pattern in facts.SID_PATTERNS.items():
        assert re.fullmatch(pattern, getattr(created, name)), name
    assert len(created.send_code_attempts) == 1
    assert set(created.send_code_attempts[0]) == set(facts.ATTEMPT_FIELDS)
    assert created.url == f"{server.api_url}/v2/Services/{service.sid}/Verifications/{created.sid}"
    assert verify.verifications(created.sid).fetch().status == "pending"
    code = server.heard()
    checked = verify.verification_checks.create(to=NUMBER, code=code)
    assert (checked.status, checked.valid, checked.sid) == ("approved", True, created.sid)
    err = twilio_error(lambda: verify.verifications(created.sid).fetch())
    assert (err.code, err.status) == facts.NOT_FOUND
    err = twilio_error(lambda: verify.verification_checks.create(to=NUMBER, code=code))  # used once only
    assert (err.code, err.status) == facts.NOT_FOUND


def test_check_by_verification_sid(server, verify):
    created = verify.verifications.create(to=NUMBER, channel="call")
    checked = verify.verification_checks.create(verification_sid=created.sid, code=server.heard())
    assert checked.status == "approved"


def test_resources_have_the_specs_fields(server, setup):
    service, key, secret = setup

    async def go():
        async with aiohttp.ClientSession(headers=basic(key.sid, secret)) as http:
            base = f"{server.api_url}/v2/Services/{service.sid}"
            async with http.post(f"{base}/Verifications", data={"To": NUMBER, "Channel": "call"}) as r:
                created = (r.status, await r.json())
            code = await asyncio.to_thread(server.heard)
            async with http.post(f"{base}/VerificationCheck", data={"To": NUMBER, "Code": code}) as r:
                checked = (r.status, await r.json())
            async with http.post(f"{base}/Verifications", data={"To": NUMBER, "Channel": "sms"}) as r:
                bad = (r.status, await r.json())
        return created, checked, bad

    created, checked, bad = asyncio.run(go())
    assert created[0] == facts.CREATE_STATUS and tuple(created[1]) == facts.VERIFICATION_FIELDS
    assert re.fullmatch(facts.DATE_PATTERN, created[1]["date_created"])
    assert checked[0] == facts.CHECK_STATUS and set(checked[1]) == set(facts.CHECK_FIELDS)
    assert (bad[0], bad[1]["code"]) == (400, 60200) and tuple(bad[1]) == facts.ERROR_FIELDS
    assert bad[1]["more_info"] == "https://www.twilio.com/docs/errors/60200"


def test_five_wrong_codes_reach_max_attempts_then_60202_even_for_the_right_one(server, verify, state_dir):
    created = verify.verifications.create(to=NUMBER, channel="call")
    code = server.heard()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(4):
        checked = verify.verification_checks.create(to=NUMBER, code=wrong)
        assert (checked.status, checked.valid) == ("pending", False)
    checked = verify.verification_checks.create(to=NUMBER, code=wrong)  # the last attempt
    assert (checked.status, checked.valid) == ("max_attempts_reached", False)
    fetched = verify.verifications(created.sid).fetch()  # the status the spec names, until it expires
    assert (fetched.status, fetched.valid) == ("max_attempts_reached", False)
    for call in (lambda: verify.verification_checks.create(to=NUMBER, code=code),
                 lambda: verify.verification_checks.create(verification_sid=created.sid, code=code)):
        err = twilio_error(call)
        assert (err.code, err.status) == facts.MAX_CHECK_ATTEMPTS
    err = twilio_error(lambda: verify.verifications(created.sid).update(status="canceled"))
    assert (err.code, err.status) == facts.NOT_FOUND  # closed: nothing to cancel
    with open_store(StoreSpec(state_dir=state_dir), sandbox=True) as store:
        assert store.get_record(records.VERIFICATION, created.sid)["status"] == "max_attempts_reached"
    again = verify.verifications.create(to=NUMBER, channel="call")  # a new verification, not a resend
    assert again.sid != created.sid and len(again.send_code_attempts) == 1
    assert verify.verifications(created.sid).fetch().status == "max_attempts_reached"
    assert verify.verification_checks.create(to=NUMBER, code=server.heard(2)).status == "approved"


def test_another_create_while_pending_is_a_new_attempt_and_the_sixth_in_ten_minutes_is_60203(server, verify):
    first = verify.verifications.create(to=NUMBER, channel="call")
    for n in range(2, 6):
        server.settle()
        again = verify.verifications.create(to=NUMBER, channel="call")
        assert again.sid == first.sid and len(again.send_code_attempts) == n
    server.settle()
    err = twilio_error(lambda: verify.verifications.create(to=NUMBER, channel="call"))
    assert (err.code, err.status) == facts.MAX_SEND_ATTEMPTS
    code = server.heard(5)  # the newest call's code is the one that counts
    assert verify.verification_checks.create(to=NUMBER, code=code).status == "approved"


def test_cancel_then_fetch_and_check_are_20404(server, verify):
    created = verify.verifications.create(to=NUMBER, channel="call")
    code = server.heard()
    canceled = verify.verifications(created.sid).update(status="canceled")
    assert canceled.status == "canceled"
    for call in (lambda: verify.verifications(created.sid).fetch(),
                 lambda: verify.verification_checks.create(to=NUMBER, code=code),
                 lambda: verify.verification_checks.create(verification_sid=created.sid, code=code)):
        err = twilio_error(call)
        assert (err.code, err.status) == facts.NOT_FOUND


def test_an_update_to_approved_approves_and_closes_the_code(server, verify, setup, state_dir):
    assert facts.UPDATE_STATUSES == ("canceled", "approved")
    created = verify.verifications.create(to=NUMBER, channel="call")
    code = server.heard()
    approved = verify.verifications(created.sid).update(status="approved")
    assert (approved.status, approved.sid) == ("approved", created.sid)
    for call in (lambda: verify.verifications(created.sid).fetch(),
                 lambda: verify.verification_checks.create(to=NUMBER, code=code),
                 lambda: verify.verification_checks.create(verification_sid=created.sid, code=code)):
        err = twilio_error(call)
        assert (err.code, err.status) == facts.NOT_FOUND
    with open_store(StoreSpec(state_dir=state_dir), sandbox=True) as store:  # serve --sandbox's verifications
        assert store.get_record(records.VERIFICATION, created.sid)["status"] == "approved"
        assert store.newest(NUMBER, setup[0].sid).state == "verified"
    assert any(line.get("event") == "approved" for line in server.lines() if line["kind"] == "verification")


@pytest.mark.parametrize(("status", "message"), [
    ("pending", "Invalid parameter `Status`: canceled or approved"),
    ("Canceled", "Invalid parameter `Status`: canceled or approved"),
    ("max_attempts_reached", "Invalid parameter `Status`: canceled or approved"),
    ("", "Invalid parameter: Status is required"),
])
def test_an_update_to_another_status_is_60200_and_changes_nothing(server, verify, status, message):
    created = verify.verifications.create(to=NUMBER, channel="call")
    err = twilio_error(lambda: verify.verifications(created.sid).update(status=status))
    assert (err.code, err.status) == facts.INVALID_PARAMETER
    assert err.msg.endswith(message), err.msg
    assert verify.verifications(created.sid).fetch().status == "pending"


def test_bad_credentials_are_20003(server, setup, state_dir):
    service, key, secret = setup
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        other, other_secret = records.create_key(store, "other")
    for sid, password in ((key.sid, "wrong"), (key.sid, other_secret), ("SK" + "0" * 32, secret), ("", ""),
                          (key.sid, secret[:-1])):
        verify = client_for(server, sid, password).verify.v2.services(service.sid)
        err = twilio_error(lambda: verify.verifications.create(to=NUMBER, channel="call"))
        assert (err.code, err.status) == facts.AUTHENTICATE
    assert server.serving.sandbox.calls == {}


def test_a_revoked_key_stops_working(server, setup, state_dir):
    service, key, secret = setup
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        other, other_secret = records.create_key(store, "other")
        assert records.revoke_key(store, other.sid)
    verify = client_for(server, other.sid, other_secret).verify.v2.services(service.sid)
    err = twilio_error(lambda: verify.verifications.create(to=NUMBER, channel="call"))
    assert (err.code, err.status) == facts.AUTHENTICATE


def test_unknown_service_is_20404(server, setup):
    _, key, secret = setup
    for sid in ("VA" + "0" * 32, "VAnot-a-sid", "../../etc"):
        verify = client_for(server, key.sid, secret).verify.v2.services(sid)
        err = twilio_error(lambda: verify.verifications.create(to=NUMBER, channel="call"))
        assert (err.code, err.status) == facts.NOT_FOUND


@pytest.mark.parametrize("fields", [
    {"To": NUMBER, "Channel": "sms"},
    {"To": NUMBER},
    {"Channel": "call"},
    {"To": "5551234567", "Channel": "call"},
    {"To": "+1555\u0661234567", "Channel": "call"},
    {"To": NUMBER, "Channel": "call", "Locale": "xx-<script>"},
    {"To": NUMBER, "Channel": "call", "CustomFriendlyName": "<Say>hi</Say>"},
    {"To": NUMBER, "Channel": "call", "CustomMessage": "x" * 1000},
    {"To": NUMBER, "Channel": "call", "CustomMessage": "bell\x07"},
])
def test_invalid_parameters_are_60200_and_nothing_is_dialed(server, setup, fields):
    service, key, secret = setup

    async def go():
        async with aiohttp.ClientSession(headers=basic(key.sid, secret)) as http:
            async with http.post(f"{server.api_url}/v2/Services/{service.sid}/Verifications", data=fields) as r:
                return r.status, await r.json()

    status, body = asyncio.run(go())
    assert (status, body["code"]) == (400, 60200)
    assert server.serving.sandbox.calls == {}


def test_bad_codes_are_60200(server, verify):
    verify.verifications.create(to=NUMBER, channel="call")
    for code in ("", "12a456", "1" * 11, "\u0661\u0662\u0663\u0664"):
        err = twilio_error(lambda: verify.verification_checks.create(to=NUMBER, code=code))
        assert err.code == 60200


def test_a_code_outside_the_specs_lengths_is_60200_and_uses_no_attempt(server, verify):
    shortest, longest = facts.CHECK_CODE_LENGTHS
    verify.verifications.create(to=NUMBER, channel="call")
    for _ in range(8):  # more than the attempts a verification has: none of them counts
        for code in ("1" * (shortest - 1), "1" * (longest + 1)):
            err = twilio_error(lambda: verify.verification_checks.create(to=NUMBER, code=code))
            assert (err.code, err.status) == facts.INVALID_PARAMETER
            assert err.msg.endswith("Invalid parameter `Code`: the 4 to 10 digits the callee heard"), err.msg
    assert verify.verification_checks.create(to=NUMBER, code="0" * shortest).status == "pending"


def test_a_verification_sid_breaking_its_pattern_is_60200(server, verify):
    created = verify.verifications.create(to=NUMBER, channel="call")
    for sid in ("VE123", "VA" + created.sid[2:], created.sid + "0", "ve" + created.sid[2:]):
        err = twilio_error(lambda: verify.verification_checks.create(verification_sid=sid, code="123456"))
        assert (err.code, err.status) == facts.INVALID_PARAMETER, sid
        assert err.msg.endswith("Invalid parameter `VerificationSid`: VE followed by 32 hexadecimal digits")
    err = twilio_error(lambda: verify.verification_checks.create(verification_sid="VE" + "A" * 32, code="123456"))
    assert (err.code, err.status) == facts.NOT_FOUND  # the pattern allows it; no such verification


def test_a_method_a_route_does_not_take_is_20004(server, setup):
    service, key, secret = setup

    async def go():
        async with aiohttp.ClientSession(headers=basic(key.sid, secret)) as http:
            async with http.delete(f"{server.api_url}/v2/Services/{service.sid}/Verifications") as r:
                return r.status, await r.json()

    status, body = asyncio.run(go())
    assert (body["code"], status) == facts.METHOD_NOT_ALLOWED
    assert body == {"code": 20004, "message": "Method not allowed",
                    "more_info": "https://www.twilio.com/docs/errors/20004", "status": 405}


def test_a_check_for_a_number_with_no_verification_is_20404(server, verify):
    err = twilio_error(lambda: verify.verification_checks.create(to=OTHER, code="123456"))
    assert (err.code, err.status) == facts.NOT_FOUND


def test_locale_friendly_name_and_message_reach_the_call(server, state_dir, setup):
    """A service whose operator allows custom messages: the locale, the caller's name and the
    message all reach the call."""
    _, key, secret = setup
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        service = records.create_service(store, "Acme", records.ServiceOptions(custom_message=True))
    verify = client_for(server, key.sid, secret).verify.v2.services(service.sid)
    verify.verifications.create(to=NUMBER, channel="call", locale="fr-FR", custom_friendly_name="Acme Paris",
                                custom_message="Bonjour de la part d'Acme.")
    server.heard()
    heard = " ".join(line for call in server.serving.sandbox.calls.values() for line in call.heard)
    assert "Bonjour de la part d'Acme." in heard and "Acme Paris" in heard


def test_a_custom_message_is_refused_unless_the_service_allows_it(server, verify):
    err = twilio_error(lambda: verify.verifications.create(to=NUMBER, channel="call",
                                                           custom_message="Read the code to the next caller."))
    assert (err.code, err.status) == (60200, 400)
    assert "CustomMessage" in err.msg
    assert server.serving.sandbox.calls == {}


def test_the_listeners_do_not_serve_each_others_routes(server, setup):
    service, key, secret = setup
    webhook = server.serving.webhook_url

    async def go():
        async with aiohttp.ClientSession(headers=basic(key.sid, secret)) as http:
            out = {}
            for name, url in (("api-on-webhook", f"{webhook}/v2/Services/{service.sid}/Verifications"),
                              ("healthz-on-webhook", f"{webhook}/healthz"),
                              ("metrics-on-webhook", f"{webhook}/metrics"),
                              ("call-on-api", f"{server.api_url}/v/abc"),
                              ("healthz", f"{server.api_url}/healthz"),
                              ("metrics-on-api", f"{server.api_url}/metrics"),
                              ("api-on-metrics", f"{server.serving.metrics_url}/v2/Services/{service.sid}/Verifications"),
                              ("healthz-on-metrics", f"{server.serving.metrics_url}/healthz"),
                              ("metrics", f"{server.serving.metrics_url}/metrics")):
                method = "POST" if "Verifications" in url or "/v/" in url else "GET"
                async with http.request(method, url, data={"To": NUMBER, "Channel": "call"}) as r:
                    out[name] = r.status
            return out

    assert asyncio.run(go()) == {"api-on-webhook": 404, "healthz-on-webhook": 404, "metrics-on-webhook": 404,
                                 "call-on-api": 404, "healthz": 200, "metrics-on-api": 404, "api-on-metrics": 404,
                                 "healthz-on-metrics": 404, "metrics": 200}
    assert server.serving.sandbox.calls == {}


def test_metrics_count_calls_codes_checks_and_lockouts(server, verify):
    verify.verifications.create(to=NUMBER, channel="call")
    code = server.heard()
    server.settle()
    verify.verification_checks.create(to=NUMBER, code="000000" if code != "000000" else "111111")
    verify.verification_checks.create(to=NUMBER, code=code)

    async def scrape():
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.serving.metrics_url}/metrics") as r:
                return await r.text()

    text = asyncio.run(scrape())
    assert "voice2fa_calls_placed_total 1.0" in text
    assert "voice2fa_codes_delivered_total 1.0" in text
    assert 'voice2fa_checks_total{outcome="wrong"} 1.0' in text
    assert 'voice2fa_checks_total{outcome="approved"} 1.0' in text
    assert re.search(r"voice2fa_webhook_seconds_count [1-9]", text)


def test_the_log_never_holds_a_code_a_token_or_a_secret(server, verify, setup):
    _, _, secret = setup
    verify.verifications.create(to=NUMBER, channel="call")
    code = server.heard()
    server.settle()
    tokens = [call.url.split("/v/")[1].split("/")[0] for call in server.serving.sandbox.calls.values()]
    verify.verification_checks.create(to=NUMBER, code=code)
    text = server.log.getvalue()
    lines = server.lines()
    assert {line["kind"] for line in lines} >= {"server", "access", "call", "verification", "check"}
    assert any(line["kind"] == "access" and line["path"] == "/v/-" for line in lines)
    shown = [line for line in lines if line["kind"] == "sandbox"]
    assert [(line["verification"], line["heard"]) for line in shown] == [(lines_sid(lines), code)]
    rest = "\n".join(line for line in text.splitlines() if json.loads(line)["kind"] != "sandbox")
    assert code not in rest and secret not in text and tokens and all(t not in text for t in tokens)


def lines_sid(lines: list[dict]) -> str:
    return next(line["verification"] for line in lines if line["kind"] == "verification")


def test_the_sandbox_log_shows_the_code_so_a_developer_can_finish(server, verify):
    created = verify.verifications.create(to=NUMBER, channel="call")
    server.heard()
    server.settle()
    shown = [line for line in server.lines() if line["kind"] == "sandbox"]
    assert [line["verification"] for line in shown] == [created.sid]
    checked = verify.verification_checks.create(to=NUMBER, code=shown[0]["heard"])
    assert checked.status == "approved"


def test_only_the_sandbox_reporter_shows_what_the_callee_heard():
    heard = ["Your code is", "7, 2, 4, 3, 5, 3", "Again:", "7, 2, 4, 3, 5, 3"]
    for sandbox, expected in ((False, []), (True, [{"kind": "sandbox", "verification": "VE1", "heard": "724353"}])):
        stream = io.StringIO()
        reporter = CallReporter(Log(stream, clock=lambda: 0.0), "VE1", sandbox=sandbox)
        reporter.heard(heard)
        reporter.heard(heard)  # a code read again is shown once
        assert [{k: v for k, v in json.loads(line).items() if k != "ts"} for line in stream.getvalue().splitlines()] \
            == expected


def test_draining_answers_503_to_new_verifications(server, verify):
    server.core.draining = True
    err = twilio_error(lambda: verify.verifications.create(to=NUMBER, channel="call"))
    assert err.status == 503
    assert server.serving.sandbox.calls == {}


def test_api_key_secrets_are_stored_only_as_a_keyed_hash(state_dir):
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        key, secret = records.create_key(store, "k")
        record = store.get_record("key", key.sid)
        secret_key = store.derive_key(records.SECRET_LABEL)
    assert secret not in json.dumps(record) and set(record) == {"sid", "name", "created", "revoked", "v",
                                                                 "services", "admin", "hash"}
    assert records.secret_matches(secret_key, key.sid, record, secret)
    assert not records.secret_matches(secret_key, key.sid, record, secret + "x")
    assert not records.secret_matches(secret_key, "SK" + "0" * 32, record, secret)  # bound to its SID
    assert not records.secret_matches(secret_key, key.sid, None, secret)
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()


def test_sigterm_stops_taking_verifications_lets_calls_end_and_exits_0(env, setup, tmp_path):
    """A real process: SIGTERM right after a verification is created; the call in flight ends
    (finished, or hung up past --drain), the log says so, exit 0."""
    import os

    from tests.helpers import serve_process

    service, key, secret = setup
    with serve_process({**os.environ, **env}) as (started, done):
        assert (started["kind"], started["event"]) == ("server", "started")

        async def create():
            async with aiohttp.ClientSession(headers=basic(key.sid, secret)) as http:
                url = f"{started['api']}/v2/Services/{service.sid}/Verifications"
                async with http.post(url, data={"To": NUMBER, "Channel": "call"}) as r:
                    return r.status

        assert asyncio.run(create()) == 201
    err = done["err"]
    assert done["returncode"] == 0, err
    events = [json.loads(line) for line in err.splitlines()]
    assert [e.get("event") for e in events if e["kind"] == "server"][-2:] == ["stopping", "stopped"]
    assert any(e["kind"] == "call" and e.get("event") == "ended" for e in events)


def test_keys_and_services_commands(env):
    import os

    from tests.helpers import run_cli

    full = {**os.environ, **env}
    made = run_cli(["keys", "create", "backend"], full)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert re.fullmatch(r"SK[0-9a-f]{32}", key["sid"]) and len(key["secret"]) >= 40
    assert "not shown again" in made.stderr and key["secret"] not in made.stderr
    listed = run_cli(["keys", "list"], full)
    assert [json.loads(line)["sid"] for line in listed.stdout.splitlines()] == [key["sid"]]
    assert re.fullmatch(facts.DATE_PATTERN, json.loads(listed.stdout)["created"])  # ISO 8601 UTC, as every JSON time
    assert key["secret"] not in listed.stdout
    assert run_cli(["keys", "revoke", key["sid"]], full).returncode == 0
    assert json.loads(run_cli(["keys", "list"], full).stdout)["revoked"] is True
    unknown = run_cli(["keys", "revoke", "SK" + "0" * 32], full)
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2, f"error: no API key {'SK' + '0' * 32!r}: see `voice2fa keys list`")
    service = run_cli(["services", "create", "Acme", "--code-length", "8", "--ttl", "5m", "--language", "fr-FR"], full)
    assert service.returncode == 0, service.stderr
    body = json.loads(service.stdout)
    assert (body["name"], body["code_length"], body["ttl"], body["language"]) == ("Acme", 8, 300, "fr-FR")
    assert re.fullmatch(facts.DATE_PATTERN, body["created"])
    assert [json.loads(line) for line in run_cli(["services", "list"], full).stdout.splitlines()] == [body]
    for bad in (["services", "create", "x", "--code-length", "3"], ["services", "create", "x", "--ttl", "11m"],
                ["services", "create", "x", "--language", "xx-YY"], ["services", "create", "\x1b[31m"],
                ["keys", "create", ""]):
        assert run_cli(bad, full).returncode == 2, bad


def test_serve_without_a_public_url_is_a_usage_error(env):
    import os

    from tests.helpers import run_cli

    done = run_cli(["serve", "--listen-api", "127.0.0.1:0"], {**os.environ, **env, "VOICE2FA_PUBLIC_URL": ""})
    assert (done.returncode, done.stderr.strip()) == (
        2, "error: serve needs the public URL that reaches --listen: --public-url or VOICE2FA_PUBLIC_URL "
           "(or --sandbox to try it with no account)")


async def _closed_by_server(reader, bound: float = 10.0):
    from tests.test_webhook import closed_by_server

    return await closed_by_server(reader, bound)


@pytest.mark.parametrize("listener", ["api", "webhook"])
def test_both_listeners_have_the_webhooks_time_limits(env, setup, listener):
    """A slow-loris (headers that never end) and an idle connection are closed on either
    listener; a body that never arrives is 408 (in Twilio's shape on the API)."""
    from voice2fa_cli.web.server import Limits

    service, key, secret = setup
    server = ServeThread(env, linger=0.5, drain=5, limits=Limits(idle=0.3, head=0.3, body=0.3))
    try:
        url = server.api_url if listener == "api" else server.serving.webhook_url
        port = int(url.rsplit(":", 1)[1])

        async def go():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            idle = await _closed_by_server(reader)
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v2/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            for _ in range(3):
                writer.write(b"a")
                await asyncio.sleep(0.05)
            slow = await _closed_by_server(reader)
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            auth = basic(key.sid, secret)["Authorization"]
            writer.write(f"POST /v2/Services/{service.sid}/VerificationCheck HTTP/1.1\r\nHost: a\r\n"
                         f"Authorization: {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                         "Content-Length: 1000\r\n\r\nCode=1".encode())
            body = await _closed_by_server(reader)
            writer.close()
            return idle, slow, body

        idle, slow, body = asyncio.run(go())
    finally:
        server.stop()
    assert idle == b"" and slow == b""
    if listener == "api":
        assert body is not None and body.startswith(b"HTTP/1.1 408 "), body
        assert json.loads(body.split(b"\r\n\r\n", 1)[1])["code"] == 60200
    else:
        assert body is not None and body.startswith(b"HTTP/1.1 404 "), body  # no API route on the webhook


def test_a_flood_of_wrong_secrets_never_refuses_the_right_key(server, setup):
    """120 concurrent wrong secrets for a known key SID, and the valid key, not yet cached, sent
    in the middle of them: every wrong one is 401, the right one authenticates (no queue to fill)."""
    service, key, secret = setup
    url = f"{server.api_url}/v2/Services/{service.sid}/Verifications/VE{'0' * 32}"

    async def go():
        async with aiohttp.ClientSession() as http:
            async def get(password):
                async with http.get(url, headers=basic(key.sid, password)) as r:
                    return r.status

            wrong = [get(f"wrong-{i}") for i in range(120)]
            statuses = await asyncio.gather(*wrong[:60], get(secret), *wrong[60:])
            return statuses[:60] + statuses[61:], statuses[60]

    statuses, right = asyncio.run(go())
    assert set(statuses) == {401} and len(statuses) == 120
    assert right == 404  # authenticated (the verification does not exist)


def test_the_access_log_drops_queries_and_tokens_and_stays_one_line_per_request(server, setup):
    service, key, secret = setup
    webhook = server.serving.webhook_url

    async def go():
        async with aiohttp.ClientSession() as http:
            for url in (f"{server.api_url}/v2/Services/{service.sid}/Verifications?secret=hunter2",
                        f"{webhook}/v/tok-en_SECRETTOKEN1234567/key?Digits=40719386",
                        f"{server.api_url}/v2/%0a%22kind%22:%22forged%22/x\\u0000"):
                async with http.post(url, headers=basic(key.sid, secret)) as r:
                    await r.read()

    asyncio.run(go())
    text = server.log.getvalue()
    assert "hunter2" not in text and "SECRETTOKEN" not in text and "40719386" not in text
    lines = server.lines()  # every line parses as one JSON object
    access = [line for line in lines if line["kind"] == "access"]
    assert [line["path"] for line in access][-3:] == [
        f"/v2/Services/{service.sid}/Verifications", "/v/-/key", '/v2/\n"kind":"forged"/x\\u0000']
    assert not any(line["kind"] == "forged" for line in lines)


# --- issue 18, item 9: a service's codes have 6 to 10 digits ------------------------------------


@pytest.mark.parametrize("length", ["4", "5", "11"])
def test_services_create_refuses_a_code_length_outside_6_to_10(env, length):
    import os

    from tests.helpers import run_cli

    result = run_cli(["services", "create", "Acme", "--code-length", length], {**os.environ, **env})
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"Invalid value for '--code-length': {length} is not in the range 6<=x<=10." in result.stderr
    with open_store(StoreSpec(state_dir=env_state(env))) as store:
        assert records.list_services(store) == []


def env_state(env: dict):
    from pathlib import Path

    return Path(env["VOICE2FA_STATE_DIR"])


def test_create_service_says_why_a_short_code_is_refused(state_dir):
    with open_store(StoreSpec(state_dir=state_dir)) as store, pytest.raises(ValueError) as info:
        records.create_service(store, "Acme", records.ServiceOptions(code_length=4))
    assert str(info.value) == "the code length must be from 6 to 10 digits (NIST SP 800-63B asks for at least 6), not 4"


def test_a_stored_4_digit_service_is_refused_before_the_send_limit_is_touched(server, setup, state_dir):
    """A service an older voice2fa stored with 4-digit codes: every create answered 500 and still
    used up the number's send limit, so any key could block a number. Now 400 before anything
    is reserved: after more failed creates than the send limit allows, a good service still calls."""
    good, key, secret = setup
    short = records.Service(records.new_sid("VA"), "Old", 4, 600, None, time.time())
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        store.put_record(records.SERVICE, short.sid, short.body(), only_new=True)

    async def create(sid: str):
        async with aiohttp.ClientSession(headers=basic(key.sid, secret)) as http:
            async with http.post(f"{server.api_url}/v2/Services/{sid}/Verifications",
                                 data={"To": NUMBER, "Channel": "call"}) as r:
                return r.status, await r.json()

    for _ in range(7):
        status, body = asyncio.run(create(short.sid))
        assert (status, body["code"]) == (400, 60200)
        assert body["message"] == ("Invalid parameter: this service's codes have 4 digits; voice2fa needs 6 to 10: "
                                   "create a service with --code-length 6 or more")
    assert server.serving.sandbox.calls == {}
    status, body = asyncio.run(create(good.sid))
    assert (status, body["status"]) == (201, "pending")


@pytest.mark.parametrize("to", ["+19005551234", "+19765551234"])
def test_a_premium_rate_number_is_60605_and_nothing_is_dialed(server, setup, to):
    service, key, secret = setup

    async def go():
        async with aiohttp.ClientSession(headers=basic(key.sid, secret)) as http:
            async with http.post(f"{server.api_url}/v2/Services/{service.sid}/Verifications",
                                 data={"To": to, "Channel": "call"}) as r:
                return r.status, await r.json()

    status, body = asyncio.run(go())
    assert (body["code"], status) == facts.DELIVERY_BLOCKED
    assert body["message"] == ("Verification delivery attempt blocked: a premium-rate number, which this server does "
                               "not call (it charges the caller extra)")
    assert server.serving.sandbox.calls == {}


def test_a_country_not_allowed_is_60605_and_nothing_is_dialed(sandbox, state_dir, setup):
    from tests.helpers import CALLER

    service, key, secret = setup
    hook = bind("127.0.0.1", 0)
    env = {"SIGNALWIRE_SPACE": sandbox.url, "SIGNALWIRE_PROJECT": sandbox.project, "SIGNALWIRE_TOKEN": sandbox.token,
           "SIGNALWIRE_NUMBER": CALLER, "SIGNALWIRE_SIGNING_KEY": sandbox.signing_key, **FAST,
           "VOICE2FA_STATE_DIR": str(state_dir), "VOICE2FA_ALLOWED_COUNTRIES": "US"}
    server = ServeThread(env, sandbox=False, public_url=f"http://127.0.0.1:{hook.getsockname()[1]}",
                         webhook_sock=hook, preflight=False, linger=0.5, drain=5)
    try:
        verify = client_for(server, key.sid, secret).verify.v2.services(service.sid)
        err = twilio_error(lambda: verify.verifications.create(to="+33612345678", channel="call"))
        assert (err.code, err.status) == facts.DELIVERY_BLOCKED
        assert err.msg.endswith("Verification delivery attempt blocked: calls to FR are not allowed by this server "
                                "(VOICE2FA_ALLOWED_COUNTRIES)"), err.msg
        assert sandbox.calls == {}
    finally:
        server.stop()


def test_a_refusal_tells_an_api_client_when_in_utc_and_seconds():
    from voice2fa_cli import policy
    from voice2fa_cli.serve import shapes

    refused = policy.number_limit_refusal(NUMBER, 5, 1_796_000_000.0)
    assert shapes.refusal(refused, now=1_796_000_000.0 - 90.2) == (
        f"send limit reached: 5 calls to {NUMBER} in the last 10 minutes; try again after 2026-11-30T00:53:20Z (in 91 s)")
    locked = policy.number_locked_refusal(NUMBER, 1_796_000_000.0)
    assert shapes.refusal(locked, now=1_796_000_001.0) == (
        f"{NUMBER} is locked after too many wrong codes; try again after 2026-11-30T00:53:20Z (in 0 s)")
    assert refused.message.startswith(f"send limit reached: 5 calls to {NUMBER} in the last 10 minutes; try again after ")
