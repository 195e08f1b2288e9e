"""serve's status events: each status change posted to the service's callback URL, signed as
Twilio signs webhooks (checked with the official SDK's RequestValidator), retried, never the
code, and refused for loopback and private addresses unless the service allows them. The
receiver is a real HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator

from tests.helpers import NUMBER, run_cli
from tests.serve_helpers import ServeThread, client_for, env, setup, twilio_error  # noqa: F401
from voice2fa_cli.sandbox import Scenario
from voice2fa_cli.serve import records
from voice2fa_cli.stores import open_store
from voice2fa_cli.stores.base import StoreSpec


class Receiver:
    """An app's callback endpoint: records each request; answers `statuses` in turn, then 200."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.requests: list[tuple[str, dict, dict]] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver.requests.append((self.path, dict(self.headers), dict(parse_qsl(body, keep_blank_values=True))))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/voice2fa/events?app=1"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def events(self, count: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.requests) >= count, self.requests
        return [form for _, _, form in self.requests]

    def close(self) -> None:
        self.http.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def make_service(state_dir, url: str, *, private: bool = True, ttl: int = 600) -> tuple[records.Service, str]:
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        service = records.create_service(store, "Acme", records.ServiceOptions(callback_url=url,
                                                                               callback_private=private))
        if ttl != 600:  # shorter than a service may be made with: for the expiry's test only
            service = records.Service.of({**service.body(), "ttl": ttl})
            store.put_record(records.SERVICE, service.sid, service.body())
        secret = records.callback_secret(store.derive_key(records.callback_label(service.sid)))
    return service, secret


@pytest.fixture
def serving(env, setup):
    s = ServeThread(env, linger=0.5, drain=5)
    yield s
    s.stop()


def callback_lines(serving, timeout: float = 20.0) -> list[dict]:
    """The log's lines about callbacks, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        told = [line for line in serving.lines() if line["kind"] == "callback"]
        if told:
            return told
        time.sleep(0.02)
    raise AssertionError("no callback line in the log")


def verify_for(serving, setup, service):
    _, key, secret = setup
    return client_for(serving, key.sid, secret).verify.v2.services(service.sid)


def test_pending_with_the_calls_outcome_then_approved_each_signed_and_never_the_code(serving, setup, state_dir,
                                                                                   receiver):
    service, secret = make_service(state_dir, receiver.url)
    verify = verify_for(serving, setup, service)
    created = verify.verifications.create(to=NUMBER, channel="call")
    code = serving.heard()
    pending = receiver.events(1)[0]
    assert pending == {"VerificationSid": created.sid, "ServiceSid": service.sid, "AccountSid": created.account_sid,
                       "To": NUMBER, "Channel": "call", "Status": "pending", "DateUpdated": pending["DateUpdated"],
                       "AttemptSid": created.send_code_attempts[0]["attempt_sid"], "CallSid": pending["CallSid"],
                       "CallStatus": "completed", "CallDuration": "38", "CodeDelivered": "true", "Error": ""}
    assert verify.verification_checks.create(to=NUMBER, code=code).status == "approved"
    approved = receiver.events(2)[1]
    assert (approved["Status"], approved["VerificationSid"]) == ("approved", created.sid)
    validator = RequestValidator(secret)
    for path, headers, form in receiver.requests:
        assert path == "/voice2fa/events?app=1"
        assert validator.validate(receiver.url, form, headers["X-Twilio-Signature"])
        assert not RequestValidator("another secret").validate(receiver.url, form, headers["X-Twilio-Signature"])
        assert code not in json.dumps(form)
    assert len(receiver.requests) == 2


def test_a_busy_call_is_a_pending_event_that_says_so_and_a_cancel_is_canceled(serving, setup, state_dir, receiver):
    service, _ = make_service(state_dir, receiver.url)
    verify = verify_for(serving, setup, service)
    serving.serving.sandbox.scenario = Scenario(outcome="busy")
    created = verify.verifications.create(to=NUMBER, channel="call")
    busy = receiver.events(1)[0]
    assert (busy["Status"], busy["CallStatus"], busy["CodeDelivered"]) == ("pending", "busy", "false")
    assert busy["Error"]
    verify.verifications(created.sid).update(status="canceled")
    assert receiver.events(2)[1]["Status"] == "canceled"


def test_the_fifth_wrong_code_is_a_max_attempts_reached_event(serving, setup, state_dir, receiver):
    service, _ = make_service(state_dir, receiver.url)
    verify = verify_for(serving, setup, service)
    verify.verifications.create(to=NUMBER, channel="call")
    code = serving.heard()
    receiver.events(1)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        verify.verification_checks.create(to=NUMBER, code=wrong)
    assert [e["Status"] for e in receiver.events(2)] == ["pending", "max_attempts_reached"]


def test_an_unanswered_verification_is_an_expired_event_once_its_ttl_is_over(serving, setup, state_dir, receiver):
    service, _ = make_service(state_dir, receiver.url, ttl=2)
    verify = verify_for(serving, setup, service)
    created = verify.verifications.create(to=NUMBER, channel="call")
    events = receiver.events(2, timeout=15)
    assert [e["Status"] for e in events] == ["pending", "expired"]
    assert events[1]["VerificationSid"] == created.sid


def test_a_verification_closed_at_once_is_never_told_expired_afterwards(serving, setup, state_dir, receiver):
    service, _ = make_service(state_dir, receiver.url, ttl=2)
    verify = verify_for(serving, setup, service)
    created = verify.verifications.create(to=NUMBER, channel="call")
    verify.verifications(created.sid).update(status="canceled")  # within the second of its create
    time.sleep(2 + 3)  # past its TTL and the expiry's timer
    statuses = [e["Status"] for e in receiver.events(1)]
    assert "canceled" in statuses
    assert "expired" not in statuses


def test_an_event_the_app_refuses_is_retried_with_backoff(serving, setup, state_dir):
    receiver = Receiver(statuses=(500,))
    try:
        service, _ = make_service(state_dir, receiver.url)
        verify_for(serving, setup, service).verifications.create(to=NUMBER, channel="call")
        first, second = receiver.events(2)
        assert first == second and first["Status"] == "pending"
        told = callback_lines(serving)
        assert (told[-1]["answer"], told[-1]["tries"]) == (200, 2)
    finally:
        receiver.close()


def test_a_callback_name_that_resolves_to_a_private_address_gets_nothing(serving, setup, state_dir, receiver):
    host = socket.gethostname()
    try:
        addresses = {a[4][0] for a in socket.getaddrinfo(host, None)}
    except OSError:
        pytest.skip(f"this machine's name {host} does not resolve")
    import ipaddress

    if any(ipaddress.ip_address(a).is_global for a in addresses):
        pytest.skip(f"{host} resolves to a public address here")
    url = receiver.url.replace("http://127.0.0.1", f"https://{host}")
    service, _ = make_service(state_dir, url, private=False)  # a name: judged when it is used
    verify_for(serving, setup, service).verifications.create(to=NUMBER, channel="call")
    [told] = callback_lines(serving)
    assert told["error"].startswith("not delivered after 1 try: ") and "no public address" in told["error"], told
    assert receiver.requests == []


@pytest.mark.parametrize(("args", "message"), [
    (["--callback-url", "http://app.example.com/events"],
     "the callback URL must be an https:// URL (http:// only for a service that allows private addresses: "
     "--callback-private, Voice2fa.CallbackPrivate)"),
    (["--callback-url", "app.example.com/events"], "the callback URL must be an absolute https:// URL"),
    (["--callback-url", "https://127.0.0.1/events"],
     "the callback URL's host 127.0.0.1 is a loopback or private address: allow such addresses for this service "
     "(--callback-private, Voice2fa.CallbackPrivate)"),
    (["--callback-url", "https://10.1.2.3/events"],
     "the callback URL's host 10.1.2.3 is a loopback or private address: allow such addresses for this service "
     "(--callback-private, Voice2fa.CallbackPrivate)"),
    (["--callback-url", "https://u:p@app.example.com/"], "the callback URL must carry no user, password or fragment"),
    (["--callback-url", "ftp://app.example.com/", "--callback-private"],
     "the callback URL must be an absolute http:// or https:// URL"),
])
def test_services_create_refuses_a_callback_url_it_must_not_post_to(env, args, message):
    result = run_cli(["services", "create", "Acme", *args], env)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (2, f"error: {message}")


def test_services_create_prints_the_callback_secret_the_events_are_signed_with(env, state_dir):
    result = run_cli(["services", "create", "Acme", "--callback-url", "https://app.example.com/events"], env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        secret = records.callback_secret(store.derive_key(records.callback_label(shown["sid"])))
    assert (shown["callback_url"], shown["callback_private"], shown["callback_secret"]) == (
        "https://app.example.com/events", False, secret)


def test_an_admin_sets_the_callback_url_through_the_api_and_only_it_sees_the_secret(serving, setup, state_dir):
    import asyncio

    import aiohttp  # the SDK has no parameter for voice2fa's own fields: a form, as curl would send it

    from tests.serve_helpers import basic

    with open_store(StoreSpec(state_dir=state_dir)) as store:
        admin_key, admin_secret = records.create_key(store, "ops", admin=True)
    service, _, _ = setup
    url = f"{serving.api_url}/v2/Services/{service.sid}"

    async def request(auth: tuple[str, str], form: dict | None = None) -> tuple[int, dict]:
        async with aiohttp.ClientSession(headers=basic(*auth)) as http, \
                http.request("POST" if form else "GET", url, data=form) as r:
            return r.status, await r.json()

    admin = (admin_key.sid, admin_secret)
    status, body = asyncio.run(request(admin, {"Voice2fa.CallbackUrl": "https://192.168.1.5/events"}))
    assert (status, body["code"], body["message"]) == (
        400, 60200, "Invalid parameter `Voice2fa.CallbackUrl`: the callback URL's host 192.168.1.5 is a loopback or "
                    "private address: allow such addresses for this service (--callback-private, "
                    "Voice2fa.CallbackPrivate)")
    status, body = asyncio.run(request(admin, {"Voice2fa.CallbackUrl": "https://app.example.com/events"}))
    assert status == 200 and body["voice2fa"]["callback_url"] == "https://app.example.com/events"
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        secret = records.callback_secret(store.derive_key(records.callback_label(service.sid)))
    assert asyncio.run(request(admin))[1]["voice2fa"]["callback_secret"] == secret
    _, key, key_secret = setup
    status, body = asyncio.run(request((key.sid, key_secret)))
    assert status == 200 and body["voice2fa"]["callback_url"] == "https://app.example.com/events"
    assert "callback_secret" not in body["voice2fa"]


def test_an_empty_callback_url_clears_it_and_the_service_posts_no_more(serving, setup, state_dir, receiver):
    import asyncio

    import aiohttp

    from tests.serve_helpers import basic

    service, _ = make_service(state_dir, receiver.url)
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        admin_key, admin_secret = records.create_key(store, "ops", admin=True)

    async def update(form: dict) -> tuple[int, dict]:
        async with aiohttp.ClientSession(headers=basic(admin_key.sid, admin_secret)) as http, \
                http.post(f"{serving.api_url}/v2/Services/{service.sid}", data=form) as r:
            return r.status, await r.json()

    status, body = asyncio.run(update({"Voice2fa.CallbackUrl": "", "Voice2fa.Message": "", "FriendlyName": ""}))
    assert status == 200, body
    assert (body["friendly_name"], body["voice2fa"]["callback_url"], body["voice2fa"]["message"]) == ("Acme", None, None)
    assert "callback_secret" not in body["voice2fa"]
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        assert records.Service.of(store.get_record(records.SERVICE, service.sid)).callback_url is None
    verify_for(serving, setup, service).verifications.create(to=NUMBER, channel="call")
    serving.heard()
    time.sleep(1.5)  # the call has ended: its pending event would have gone out by now
    assert receiver.requests == []
