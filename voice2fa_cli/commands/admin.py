"""`voice2fa serve` (the Verify v2-shaped API) and what it serves with: `keys` and `services`."""

from __future__ import annotations

import click

from voice2fa_cli import otp
from voice2fa_cli.commands import Command, Group
from voice2fa_cli.commands.edge import exit_codes
from voice2fa_cli.commands.params import Digits, parse_ttl

SERVE_EXAMPLES = """
\b
Examples:
  # try it: a local stand-in, nothing is dialed
  voice2fa serve --sandbox
  # a service (sid VA...); a key: its secret shows once
  voice2fa services create "Acme login"
  voice2fa keys create backend
  # a key for that service only
  voice2fa keys create billing --service VA...
  # for real, no tunnel: nothing inbound but the API
  voice2fa serve --delivery inline
  # for real, through a tunnel
  voice2fa serve --public-url https://hooks.example.com \\
    --listen 127.0.0.1:5000
  # a verification (API=http://127.0.0.1:8080)
  curl -u "$KEY_SID:$KEY_SECRET" -d Channel=call \\
    --data-urlencode To=+15551234567 \\
    "$API/v2/Services/$VA/Verifications"
"""


@click.command("serve", cls=Command, epilog=SERVE_EXAMPLES)
@click.option("--listen-api", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Where the API (/v2, /healthz) listens; keep it off the internet.")
@click.option("--listen-metrics", default="127.0.0.1:9464", show_default=True, metavar="HOST:PORT",
              help="Where Prometheus /metrics listens (no key: keep it on loopback or a private network).")
@click.option("--listen", metavar="HOST:PORT",
              help="Where the webhook listens (call routes only) "
                   "[VOICE2FA_LISTEN, 127.0.0.1:5000; --sandbox: any free port].")
@click.option("--public-url", metavar="URL", help="Public base URL that reaches --listen [VOICE2FA_PUBLIC_URL].")
@click.option("--sandbox", is_flag=True,
              help="Place calls through a local stand-in of SignalWire: no account, nothing dialed.")
@click.option("--drain", type=Digits(0, 900), default=60, show_default=True,
              help="On SIGTERM, seconds the calls in flight get to finish before they are hung up.")
@click.option("--skip-preflight", is_flag=True, help="Do not check at start that the public URL reaches this server.")
@click.option("--delivery", type=click.Choice(["webhook", "inline"]), metavar="webhook|inline",
              help="How calls get their script: webhook (through --public-url) or inline (no webhook listener: "
                   "nothing inbound but the API) [VOICE2FA_DELIVERY, webhook].")
def serve_command(listen_api, listen_metrics, listen, public_url, sandbox, drain, skip_preflight, delivery) -> None:
    """Serve a voice verification API in the shape of Twilio Verify v2.

    Applications create verifications (POST /v2/Services/VA.../Verifications with To and
    Channel=call) and check codes (POST .../VerificationCheck with Code and To) with an API key
    as HTTP basic auth; voice2fa calls the number and reads the code. Logs are JSON lines on
    stderr. SIGTERM: new verifications get 503, calls in flight finish (up to --drain), exit 0.
    """
    from voice2fa_cli import environment
    from voice2fa_cli.serve import main as serve_main

    with exit_codes(False):
        env = environment.load_environment()
        serve_main.run(env, listen_api=listen_api, listen=listen, public_url=public_url, sandbox=sandbox,
                       drain=float(drain), preflight=not skip_preflight, listen_metrics=listen_metrics,
                       delivery=delivery)


def _records_store():
    from voice2fa_cli import config, environment
    from voice2fa_cli.stores import open_store

    return open_store(config.store_spec(environment.load_environment()))


@click.group("keys", cls=Group)
def keys_group() -> None:
    """API keys for `voice2fa serve` (HTTP basic auth: the key's SID and its secret)."""


@keys_group.command("create")
@click.argument("name")
@click.option("--service", "services", multiple=True, metavar="VA...",
              help="Reach only this service (repeat for several) [default: every service, as Twilio's keys].")
@click.option("--admin", is_flag=True,
              help="Also create, update and delete services through the API (/v2/Services).")
def keys_create(name, services, admin) -> None:
    """Make an API key; its secret is printed once (JSON on stdout) and stored only as a keyed hash."""
    from voice2fa_cli import ui
    from voice2fa_cli.errors import ConfigError
    from voice2fa_cli.serve import records

    with exit_codes(True), _records_store() as store:
        try:
            key, secret = records.create_key(store, name, tuple(services) if services else None, admin=admin)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        ui.emit_json({"sid": key.sid, "name": key.name, "services": _services(key), "admin": key.admin,
                      "secret": secret})
        click.echo(f"API key {key.sid} made: keep its secret now, it is not shown again", err=True)


@keys_group.command("list")
def keys_list() -> None:
    """The API keys (never their secrets), as JSON lines on stdout."""
    from voice2fa_cli import ui
    from voice2fa_cli.serve import records

    with exit_codes(True), _records_store() as store:
        for key in records.list_keys(store):
            line = {"sid": key.sid, "name": key.name, "created": ui.iso(key.created), "revoked": key.revoked,
                    "services": _services(key), "admin": key.admin, "usable": key.usable}
            if not key.usable:
                line["why"] = "made by an older voice2fa (an scrypt hash): make a new key and revoke this one"
            ui.emit_json(line)


def _services(key) -> list[str] | str:
    return "all" if key.services is None else list(key.services)


@keys_group.command("revoke")
@click.argument("sid")
def keys_revoke(sid) -> None:
    """Revoke an API key (servers stop taking it within 5 seconds)."""
    from voice2fa_cli.errors import ConfigError
    from voice2fa_cli.serve import records

    with exit_codes(False), _records_store() as store:
        if not records.revoke_key(store, sid):
            raise ConfigError(f"no API key {sid[:40]!r}: see `voice2fa keys list`")
        click.echo(f"API key {sid} revoked", err=True)


@click.group("services", cls=Group)
def services_group() -> None:
    """Verification services for `voice2fa serve` (each with its code length, TTL and language)."""


@services_group.command("create", cls=Command, epilog="""
\b
Examples:
  voice2fa services create "Acme login"
  # French calls, 8 digits, codes valid 5 minutes
  voice2fa services create "Acme" --language fr-FR \\
    --code-length 8 --ttl 5m
  # signed status events to your application
  voice2fa services create "Acme" \\
    --callback-url https://app.example.com/v2fa-events
""")
@click.argument("name")
@click.option("--code-length", type=Digits(otp.MIN_DIGITS, otp.MAX_DIGITS), default=otp.DEFAULT_DIGITS,
              show_default=True, help=f"Digits in each code, {otp.MIN_DIGITS} to {otp.MAX_DIGITS} "
              f"(NIST SP 800-63B asks for at least {otp.MIN_DIGITS}).")
@click.option("--ttl", callback=parse_ttl, metavar="SECONDS|Nm",
              help="How long a code stays valid (max 10m).  [default: 10m]")
@click.option("--language", help="The calls' default language, e.g. fr-FR [default: from the callee's country].")
@click.option("--max-calls-per-hour", type=Digits(1, 100_000), metavar="N",
              help="Calls this service may place per hour, at most the hourly cap [default: half the cap].")
@click.option("--friendly-name/--no-friendly-name", default=True, show_default=True,
              help="Whether a request's CustomFriendlyName is said (else the service's name is).")
@click.option("--custom-message/--no-custom-message", default=False, show_default=True,
              help="Whether a request's CustomMessage is said (any key could make the call say anything).")
@click.option("--message", metavar="TEXT", help="A fixed message the calls open with, instead of the default.")
@click.option("--custom-code/--no-custom-code", default=False, show_default=True,
              help="Whether a request's CustomCode is the code the call reads (Twilio's CustomCodeEnabled).")
@click.option("--keypress/--no-keypress", default=True, show_default=True,
              help="Whether the callee presses a key before the code is read (Twilio's DtmfInputRequired).")
@click.option("--voice", metavar="NAME", help="The calls' voice, as `send --voice` takes it (Twilio's TtsName).")
@click.option("--callback-url", metavar="URL", help="Where serve posts the verifications' status events "
              "(https; signed with the callback_secret printed).")
@click.option("--callback-private", is_flag=True, help="Let the callback URL reach loopback and private "
              "addresses (and use http), e.g. an app on the same host.")
def services_create(name, code_length, ttl, language, max_calls_per_hour, friendly_name, custom_message,
                    message, custom_code, keypress, voice, callback_url, callback_private) -> None:
    """Make a service; prints it as JSON on stdout (its sid is the VA... in the API's URLs)."""
    from voice2fa_cli import ui
    from voice2fa_cli.errors import ConfigError
    from voice2fa_cli.serve import records

    with exit_codes(True), _records_store() as store:
        try:
            options = records.ServiceOptions(code_length, ttl, language,
                                             None if max_calls_per_hour is None else int(max_calls_per_hour),
                                             friendly_name, custom_message, message, custom_code, keypress, voice,
                                             callback_url, callback_private)
            service = records.create_service(store, name, options)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        ui.emit_json(_service_json(service, store))


def _service_json(service, store) -> dict:
    """The service; with a callback URL, the secret its events are signed with."""
    from voice2fa_cli import ui
    from voice2fa_cli.serve import records

    body = {k: v for k, v in service.body().items() if k != "deleted"}
    if service.callback_url is not None:
        body["callback_secret"] = records.callback_secret(store.derive_key(records.callback_label(service.sid)))
    return {**body, "created": ui.iso(service.created), "updated": ui.iso(body["updated"])}


@services_group.command("list")
def services_list() -> None:
    """The services, as JSON lines on stdout."""
    from voice2fa_cli import ui
    from voice2fa_cli.serve import records

    with exit_codes(True), _records_store() as store:
        for service in records.list_services(store):
            ui.emit_json(_service_json(service, store))
