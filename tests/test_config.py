"""voice2fa_cli.config: settings from flags > environment > .env > defaults, checked early."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from voice2fa_cli import config, environment
from voice2fa_cli.config import Listen, Settings, Timing
from voice2fa_cli.errors import ConfigError
from voice2fa_cli.stores.base import StoreSpec

TOKEN = "PT9f8e7d6c5b4a39281706f5e4d3c2b1a0"
SIGNING_KEY = "PSK_4b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e"
SECRETS = (TOKEN, SIGNING_KEY)

ENV = {
    "SIGNALWIRE_SPACE": "acme.signalwire.com",
    "SIGNALWIRE_PROJECT": "a1b2c3d4-0000-4000-8000-123456789abc",
    "SIGNALWIRE_TOKEN": TOKEN,
    "SIGNALWIRE_NUMBER": "+15550100000",
    "SIGNALWIRE_SIGNING_KEY": SIGNING_KEY,
    "VOICE2FA_PUBLIC_URL": "https://abc123.ngrok.app",
}
UNASSIGNED = "SIGNALWIRE_NUMBER +15550100000 is not known to be an assigned number"


def config_error(func, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        func(*args, **kwargs)
    assert info.value.exit_code == 2
    return info.value


# --- parse_space ----------------------------------------------------------------------------------

SPACE_HINT = "give a host such as example.signalwire.com"


@pytest.mark.parametrize(
    ("value", "base"),
    [
        ("acme.signalwire.com", "https://acme.signalwire.com"),
        ("Acme.SignalWire.COM", "https://acme.signalwire.com"),
        ("https://acme.signalwire.com", "https://acme.signalwire.com"),
        ("https://acme.signalwire.com/", "https://acme.signalwire.com"),
        ("HTTPS://acme.signalwire.com", "https://acme.signalwire.com"),
        ("acme.signalwire.com:8443", "https://acme.signalwire.com:8443"),
        ("https://acme.signalwire.com:8443", "https://acme.signalwire.com:8443"),
        ("acme.signalwire.com.", "https://acme.signalwire.com."),
        ("eu-1.acme.signalwire.com", "https://eu-1.acme.signalwire.com"),
    ],
)
def test_parse_space_https(value, base):
    assert config.parse_space(value) == base


@pytest.mark.parametrize(
    ("value", "base"),
    [
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://127.5.6.7", "http://127.5.6.7"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_parse_space_plain_http_only_for_loopback(value, base):
    assert config.parse_space(value) == base


@pytest.mark.parametrize(
    "value", ["http://acme.signalwire.com", "http://10.0.0.1:8080", "http://[::2]:80", "http://128.0.0.1",
              "http://localhost.example.com", "http://evil.localhost:8080", "http://sandbox.localhost"]
)
def test_parse_space_refuses_http_for_other_hosts(value):
    from urllib.parse import urlsplit

    host = urlsplit(value).hostname  # even a host the operator allowed explicitly
    assert config_error(config.parse_space, value, allowed_host=host).message == (
        "SIGNALWIRE_SPACE uses http:// for a host that is not loopback: use https://"
    )


NOT_A_SPACE = (
    "SIGNALWIRE_SPACE host {host} is not a SignalWire Space (*.signalwire.com) nor a loopback address: the API "
    "credentials would be sent there; to use it anyway, set VOICE2FA_ALLOW_SPACE_HOST={host} in the real environment"
)


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("evil.example", "evil.example"),
        ("https://203.0.113.7", "203.0.113.7"),
        ("http://localhost:8080", "localhost"),  # a name, even this one: only literal loopback addresses pass
        ("http://LOCALHOST:8080", "localhost"),
        ("http://evil.localhost:8080", "evil.localhost"),
        ("signalwire.com", "signalwire.com"),
        ("evilsignalwire.com", "evilsignalwire.com"),
        ("acme.signalwire.com.evil.example", "acme.signalwire.com.evil.example"),
        ("https://[::2]", "[::2]"),
        ("https://10.0.0.1:8443", "10.0.0.1"),
    ],
)
def test_parse_space_refuses_hosts_that_are_not_signalwire_or_loopback(value, host):
    assert config_error(config.parse_space, value).message == NOT_A_SPACE.format(host=host)


@pytest.mark.parametrize(
    ("value", "allowed", "base"),
    [
        ("https://stand-in.internal", "stand-in.internal", "https://stand-in.internal"),
        ("https://Stand-In.Internal:8443", "stand-in.internal", "https://stand-in.internal:8443"),
        ("http://localhost:8080", "localhost", "http://localhost:8080"),
        ("https://203.0.113.7", "203.0.113.7", "https://203.0.113.7"),
        ("https://[2001:db8::1]", "2001:db8::1", "https://[2001:db8::1]"),
    ],
)
def test_parse_space_accepts_a_host_the_operator_allowed(value, allowed, base):
    assert config.parse_space(value, allowed_host=allowed) == base


def test_the_allowed_host_is_that_host_only():
    assert config_error(config.parse_space, "https://evil.internal", allowed_host="stand-in.internal").message == (
        NOT_A_SPACE.format(host="evil.internal")
    )


@pytest.mark.parametrize("value", ["example.signalwire.com", "https://EXAMPLE.signalwire.com/"])
def test_the_example_env_placeholder_is_refused(value):
    assert config_error(config.parse_space, value).message == (
        "SIGNALWIRE_SPACE is example.signalwire.com, the placeholder from example.env: put your own Space's "
        "domain (top of your SignalWire Dashboard)"
    )


def test_space_reads_the_opt_in_from_the_real_environment(clean_env):
    environ = {"SIGNALWIRE_SPACE": "https://stand-in.internal", "VOICE2FA_ALLOW_SPACE_HOST": "stand-in.internal"}
    assert config.space(environment.load_environment(clean_env, environ)) == "https://stand-in.internal"


def test_space_refuses_the_opt_in_from_dotenv(clean_env):
    # A .env (a cloned project's, say) that could allow a host could send the credentials anywhere.
    path = write_dotenv(clean_env, "SIGNALWIRE_SPACE=https://evil.example\nVOICE2FA_ALLOW_SPACE_HOST=evil.example\n")
    env = environment.load_environment(clean_env, {"SIGNALWIRE_PROJECT": "p", "SIGNALWIRE_TOKEN": TOKEN})
    assert config_error(config.space, env).message == (
        f"VOICE2FA_ALLOW_SPACE_HOST is read only from the real environment, not from {path}: export it in your shell"
    )


def test_space_from_dotenv_alone_cannot_leave_signalwire(clean_env):
    write_dotenv(clean_env, "SIGNALWIRE_SPACE=evil.example\n")
    env = environment.load_environment(clean_env, {"SIGNALWIRE_PROJECT": "p", "SIGNALWIRE_TOKEN": TOKEN})
    assert config_error(config.send_settings, {**ENV, **env}).message == NOT_A_SPACE.format(host="evil.example")


@pytest.mark.parametrize("allowed", ["a b", "https://x.example", "x.example/path", "\x1b]0;x\x07"])
def test_a_malformed_opt_in_is_refused(allowed):
    error = config_error(config.space, {"SIGNALWIRE_SPACE": "acme.signalwire.com", "VOICE2FA_ALLOW_SPACE_HOST": allowed})
    assert error.message.startswith("VOICE2FA_ALLOW_SPACE_HOST ")
    assert error.message.endswith("is not a host name: give the host alone, e.g. stand-in.internal")


@pytest.mark.parametrize(
    "value",
    ["https://acme.signalwire.com/api", "acme.signalwire.com/api/laml/2010-04-01",
     "https://acme.signalwire.com?x=1", "https://acme.signalwire.com#top"],
)
def test_parse_space_refuses_a_path_query_or_fragment(value):
    assert config_error(config.parse_space, value).message == (
        "SIGNALWIRE_SPACE must have no path (the client appends /api/laml/2010-04-01/…): "
        "give only the host, e.g. example.signalwire.com"
    )


@pytest.mark.parametrize("value", ["https://user:pw@acme.signalwire.com", f"proj:{TOKEN}@acme.signalwire.com"])
def test_parse_space_refuses_credentials_without_echoing_them(value):
    error = config_error(config.parse_space, value)
    assert error.message == "SIGNALWIRE_SPACE must not carry credentials: use SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN"
    assert TOKEN not in error.message


@pytest.mark.parametrize(
    "value",
    ["https://acme.signalwire.com:99999", "https://acme.signalwire.com:65536", "acme.signalwire.com:abc",
     "https://acme.signalwire.com:-1"],
)
def test_parse_space_refuses_bad_ports(value):
    assert config_error(config.parse_space, value).message == f"SIGNALWIRE_SPACE has an invalid port: {SPACE_HINT}"


def test_parse_space_refuses_port_zero():
    # Nothing can be reached on port 0: it is as invalid a destination as 99999.
    assert config_error(config.parse_space, "acme.signalwire.com:0").message == (
        f"SIGNALWIRE_SPACE has an invalid port: {SPACE_HINT}"
    )


@pytest.mark.parametrize("value", ["https://", "https://-bad-.com", "https://a_b.com", "https://example.com:"])
def test_parse_space_refuses_bad_hosts(value):
    assert config_error(config.parse_space, value).message == f"SIGNALWIRE_SPACE has no valid host name: {SPACE_HINT}"


@pytest.mark.parametrize("value", ["ftp://acme.signalwire.com", "wss://acme.signalwire.com"])
def test_parse_space_refuses_other_schemes(value):
    scheme = value.split("://")[0]
    assert config_error(config.parse_space, value).message == (
        f"SIGNALWIRE_SPACE must be an https URL or a bare host, not {scheme}://"
    )


@pytest.mark.parametrize("value", ["example .signalwire.com", "acme.signalwire.com\n", "exa\x00mple.com", "\texample.com"])
def test_parse_space_refuses_spaces_and_control_characters(value):
    assert config_error(config.parse_space, value).message == (
        f"SIGNALWIRE_SPACE contains spaces or control characters: {SPACE_HINT}"
    )


def test_parse_space_names_the_variable_it_was_given():
    assert config_error(config.parse_space, "ftp://x.com", "--space").message == (
        "--space must be an https URL or a bare host, not ftp://"
    )


# --- parse_public_url --------------------------------------------------------------------------------

LOOPBACK_WARNING = "VOICE2FA_PUBLIC_URL is a loopback address: SignalWire cannot reach it (a local stand-in can)"
HTTP_WARNING = "VOICE2FA_PUBLIC_URL uses plain http://: the call's webhook travels unencrypted"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("https://abc123.ngrok.app", "https://abc123.ngrok.app"),
        ("https://abc123.ngrok.app/", "https://abc123.ngrok.app"),
        ("https://abc123.ngrok.app/voice2fa/", "https://abc123.ngrok.app/voice2fa"),
        ("https://abc123.ngrok.app:8443", "https://abc123.ngrok.app:8443"),
    ],
)
def test_parse_public_url_https_has_no_warning(value, url):
    assert config.parse_public_url(value) == (url, [])


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://localhost:5000/", "https://localhost:5000"),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("http://127.9.9.9", "http://127.9.9.9"),
    ],
)
def test_parse_public_url_loopback_is_accepted_with_a_warning(value, url):
    assert config.parse_public_url(value) == (url, [LOOPBACK_WARNING])


def test_parse_public_url_plain_http_is_accepted_with_a_warning():
    assert config.parse_public_url("http://abc123.ngrok.app") == ("http://abc123.ngrok.app", [HTTP_WARNING])


def test_parse_public_url_warning_names_the_flag():
    assert config.parse_public_url("http://abc123.ngrok.app", "--public-url") == (
        "http://abc123.ngrok.app",
        ["--public-url uses plain http://: the call's webhook travels unencrypted"],
    )


@pytest.mark.parametrize("value", ["https://abc.ngrok.app?x=1", "https://abc.ngrok.app/#frag", "https://abc.ngrok.app/p?a=b#c"])
def test_parse_public_url_refuses_query_and_fragment(value):
    assert config_error(config.parse_public_url, value).message == (
        "VOICE2FA_PUBLIC_URL must not have a query string or fragment"
    )


@pytest.mark.parametrize("value", ["https://abc.ngrok.app/?", "https://abc.ngrok.app/#"])
def test_parse_public_url_refuses_an_empty_query_or_fragment(value):
    # Accepted as is, 'https://abc.ngrok.app/?' would put every webhook path in a query string.
    assert config_error(config.parse_public_url, value).message == (
        "VOICE2FA_PUBLIC_URL must not have a query string or fragment"
    )


@pytest.mark.parametrize("value", ["https://", "http:///path", "https://-x-.com", "https://a_b.com"])
def test_parse_public_url_refuses_no_host(value):
    assert config_error(config.parse_public_url, value).message == (
        "VOICE2FA_PUBLIC_URL has no valid host name (e.g. https://abc123.ngrok.app)"
    )


@pytest.mark.parametrize("value", ["ftp://abc.ngrok.app", "abc123.ngrok.app", "", "ws://abc.ngrok.app"])
def test_parse_public_url_refuses_bad_schemes(value):
    assert config_error(config.parse_public_url, value).message == (
        "VOICE2FA_PUBLIC_URL must start with https:// (e.g. https://abc123.ngrok.app)"
    )


def test_parse_public_url_refuses_credentials_without_echoing_them():
    error = config_error(config.parse_public_url, f"https://u:{TOKEN}@abc.ngrok.app")
    assert error.message == "VOICE2FA_PUBLIC_URL must not carry credentials"


@pytest.mark.parametrize("value", ["https://abc.ngrok.app:99999", "https://abc.ngrok.app:x"])
def test_parse_public_url_refuses_bad_ports(value):
    assert config_error(config.parse_public_url, value).message == (
        "VOICE2FA_PUBLIC_URL has an invalid port: give a URL such as https://abc123.ngrok.app"
    )


@pytest.mark.parametrize("value", ["https://abc.ngrok.app /x", "https://abc.ngrok.app\n", "https://abc\x00.app"])
def test_parse_public_url_refuses_spaces_and_control_characters(value):
    assert config_error(config.parse_public_url, value).message == "VOICE2FA_PUBLIC_URL contains spaces or control characters"


# --- parse_listen ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "listen"),
    [
        ("127.0.0.1:5000", Listen("127.0.0.1", 5000)),
        ("0.0.0.0:8080", Listen("0.0.0.0", 8080)),
        ("localhost:5000", Listen("localhost", 5000)),
        ("[::1]:5000", Listen("::1", 5000)),
        ("[::]:80", Listen("::", 80)),
        ("127.0.0.1:65535", Listen("127.0.0.1", 65535)),
        ("  127.0.0.1:5000  ", Listen("127.0.0.1", 5000)),
    ],
)
def test_parse_listen(value, listen):
    assert config.parse_listen(value) == listen


def test_listen_str_brackets_ipv6():
    assert str(Listen("::1", 5000)) == "[::1]:5000"
    assert str(Listen("127.0.0.1", 5000)) == "127.0.0.1:5000"


@pytest.mark.parametrize(
    "value", ["127.0.0.1", "127.0.0.1:", ":5000", "[::1]5000", "::1:5000", "[zz::1]:5000", "a b:5000", "127.0.0.1:123456", ""]
)
def test_parse_listen_refuses_bad_forms(value):
    assert config_error(config.parse_listen, value).message == f"--listen {value!r} is not HOST:PORT (e.g. 127.0.0.1:5000)"


@pytest.mark.parametrize("port", [65536, 70000, 99999])
def test_parse_listen_refuses_ports_above_65535(port):
    assert config_error(config.parse_listen, f"127.0.0.1:{port}").message == (
        f"--listen '127.0.0.1:{port}': port {port} is above 65535"
    )


def test_parse_listen_refuses_a_bad_ipv6_address():
    assert config_error(config.parse_listen, "[1:2:3]:5000").message == "--listen '[1:2:3]:5000': 1:2:3 is not an IPv6 address"


@pytest.mark.parametrize("host", ["host_x", "-bad", "bad-"])
def test_parse_listen_refuses_a_bad_host_name(host):
    assert config_error(config.parse_listen, f"{host}:80").message == (
        f"--listen '{host}:80': {host!r} is not a host name or address"
    )


def test_listen_from_env_flag_and_default():
    assert config.listen({}, None) == Listen("127.0.0.1", 5000)
    assert config.listen({"VOICE2FA_LISTEN": "0.0.0.0:7000"}, None) == Listen("0.0.0.0", 7000)
    assert config.listen({"VOICE2FA_LISTEN": "0.0.0.0:7000"}, "127.0.0.1:7001") == Listen("127.0.0.1", 7001)
    assert config_error(config.listen, {"VOICE2FA_LISTEN": "nope"}, None).message == (
        "VOICE2FA_LISTEN 'nope' is not HOST:PORT (e.g. 127.0.0.1:5000)"
    )


# --- timing ------------------------------------------------------------------------------------------


def test_timing_defaults():
    assert config.timing({}) == Timing(ring_timeout=30, poll_interval=5.0, webhook_grace=15.0, api_timeout=15.0)
    assert config.timing({}, 12) == Timing(ring_timeout=12, poll_interval=5.0, webhook_grace=15.0, api_timeout=15.0)


BOUNDS = [
    ("VOICE2FA_POLL_INTERVAL", "poll_interval", "0.01", "5"),
    ("VOICE2FA_WEBHOOK_GRACE", "webhook_grace", "0.05", "120"),
    ("VOICE2FA_API_TIMEOUT", "api_timeout", "0.05", "120"),
]


@pytest.mark.parametrize(("name", "attr", "low", "high"), BOUNDS)
def test_timing_accepts_values_within_bounds(name, attr, low, high):
    assert getattr(config.timing({name: low}), attr) == float(low)
    assert getattr(config.timing({name: high}), attr) == float(high)
    assert getattr(config.timing({name: "0.2"}), attr) == 0.2
    assert getattr(config.timing({name: ".5"}), attr) == 0.5


@pytest.mark.parametrize(("name", "attr", "low", "high"), BOUNDS)
@pytest.mark.parametrize("which", ["below", "above", "zero"])
def test_timing_refuses_values_out_of_bounds(name, attr, low, high, which):
    value = {"below": str(float(low) / 2), "above": str(float(high) + 0.5), "zero": "0"}[which]
    assert config_error(config.timing, {name: value}).message == f"{name} must be between {low} and {high} seconds"


@pytest.mark.parametrize(("name", "attr", "low", "high"), BOUNDS)
@pytest.mark.parametrize(
    "value",
    ["abc", "5s", "1,5", "x" * 50, "-1", "+1", " 1", "1 ", "nan", "inf", "1e1", "1_0", "1.", "²", "１", "١",
     "0x10", "1.5.5", "9" * 20],
)
def test_timing_refuses_non_numbers(name, attr, low, high, value):
    shown = repr(value) if len(value) <= 40 else repr(value[:40] + "…")
    assert config_error(config.timing, {name: value}).message == f"{name} must be a number of seconds, not {shown}"


@pytest.mark.parametrize(("name", "attr", "low", "high"), BOUNDS)
@pytest.mark.parametrize("value", ["", "   "])
def test_timing_blank_means_default(name, attr, low, high, value):
    assert config.timing({name: value}) == Timing()


# --- state_dir -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_STATE_HOME is the Linux convention")
def test_state_dir_default_is_the_user_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    assert config.state_dir({}) == tmp_path / "xdg-state" / "voice2fa"
    assert config.state_dir({"VOICE2FA_STATE_DIR": "  "}) == tmp_path / "xdg-state" / "voice2fa"


def test_state_dir_from_the_environment(tmp_path):
    assert config.state_dir({"VOICE2FA_STATE_DIR": str(tmp_path / "s")}) == tmp_path / "s"


def test_state_dir_expands_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.state_dir({"VOICE2FA_STATE_DIR": "~/v2fa"}) == tmp_path / "home" / "v2fa"


def test_state_dir_refuses_nul():
    assert config_error(config.state_dir, {"VOICE2FA_STATE_DIR": "a\x00b"}).message == (
        "VOICE2FA_STATE_DIR contains a NUL character"
    )


# --- send_settings -------------------------------------------------------------------------------------


def test_send_settings_from_a_complete_environment(tmp_path):
    env = {**ENV, "VOICE2FA_STATE_DIR": str(tmp_path / "state")}
    settings = config.send_settings(env)
    assert settings == Settings(
        space="https://acme.signalwire.com",
        project="a1b2c3d4-0000-4000-8000-123456789abc",
        token=TOKEN,
        caller="+15550100000",
        signing_key=SIGNING_KEY,
        public_url="https://abc123.ngrok.app",
        listen=Listen("127.0.0.1", 5000),
        state_dir=tmp_path / "state",
        timing=Timing(),
        allowed_countries=frozenset({"US"}),
        max_calls_per_hour=30,
        warnings=(UNASSIGNED,),
        store=StoreSpec(state_dir=tmp_path / "state"),
    )
    assert settings.store.describe() == f"SQLite in {tmp_path / 'state'}"
    assert settings.api_base == "https://acme.signalwire.com/api/laml/2010-04-01/Accounts/a1b2c3d4-0000-4000-8000-123456789abc"


def test_settings_are_frozen():
    settings = config.send_settings(ENV)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.token = "other"  # type: ignore[misc]


def test_signing_key_is_optional():
    env = {k: v for k, v in ENV.items() if k != "SIGNALWIRE_SIGNING_KEY"}
    assert config.send_settings(env).signing_key is None
    assert config.send_settings({**env, "SIGNALWIRE_SIGNING_KEY": "  "}).signing_key is None


def test_a_known_caller_number_gives_no_warning():
    assert config.send_settings({**ENV, "SIGNALWIRE_NUMBER": "+33612345678"}).warnings == ()


MISSING = [
    ("SIGNALWIRE_SPACE", "SIGNALWIRE_SPACE is not set: your Space's domain, e.g. example.signalwire.com "
                         "(top of your SignalWire Dashboard)"),
    ("SIGNALWIRE_PROJECT", "SIGNALWIRE_PROJECT is not set: copy the Project ID from the API page of your "
                           "SignalWire Dashboard"),
    ("SIGNALWIRE_TOKEN", "SIGNALWIRE_TOKEN is not set: create an API token on the API page of your SignalWire Dashboard"),
    ("SIGNALWIRE_NUMBER", "SIGNALWIRE_NUMBER is not set: a number of your project, in E.164 (Phone Numbers page "
                          "of your SignalWire Dashboard)"),
    ("VOICE2FA_PUBLIC_URL", "VOICE2FA_PUBLIC_URL is not set: start a tunnel to the --listen address "
                            "(e.g. `ngrok http 5000`) and pass its https URL with --public-url or VOICE2FA_PUBLIC_URL"),
]


@pytest.mark.parametrize(("name", "message"), MISSING)
def test_each_missing_variable_is_named(name, message):
    env = {k: v for k, v in ENV.items() if k != name}
    assert config_error(config.send_settings, env).message == message


@pytest.mark.parametrize(("name", "message"), MISSING)
def test_a_blank_variable_counts_as_missing(name, message):
    assert config_error(config.send_settings, {**ENV, name: "   "}).message == message


def test_public_url_flag_makes_the_variable_unnecessary():
    env = {k: v for k, v in ENV.items() if k != "VOICE2FA_PUBLIC_URL"}
    assert config.send_settings(env, public_url="https://flag.ngrok.app").public_url == "https://flag.ngrok.app"


@pytest.mark.parametrize("project", ["proj:secret", "proj id", "proj\tid", "proj\x00"])
def test_project_with_a_colon_space_or_control_character(project):
    assert config_error(config.send_settings, {**ENV, "SIGNALWIRE_PROJECT": project}).message == (
        "SIGNALWIRE_PROJECT has a colon, space or control character: copy the Project ID from the API page of "
        "your SignalWire Dashboard"
    )


@pytest.mark.parametrize("token", [TOKEN + "\n" + "x", TOKEN + "\x00", "\x1b" + TOKEN])
def test_token_with_a_control_character(token):
    error = config_error(config.send_settings, {**ENV, "SIGNALWIRE_TOKEN": token})
    assert error.message == (
        "SIGNALWIRE_TOKEN has a control character: create an API token on the API page of your SignalWire Dashboard"
    )
    assert TOKEN not in error.message


def test_bad_caller_number_is_named():
    assert config_error(config.send_settings, {**ENV, "SIGNALWIRE_NUMBER": "+1 555"}).message == (
        "SIGNALWIRE_NUMBER '+1 555' is too short for its country (+1)"
    )


def test_bad_public_url_names_its_source():
    assert config_error(config.send_settings, {**ENV, "VOICE2FA_PUBLIC_URL": "ftp://x.com"}).message == (
        "VOICE2FA_PUBLIC_URL must start with https:// (e.g. https://abc123.ngrok.app)"
    )
    assert config_error(config.send_settings, ENV, public_url="ftp://x.com").message == (
        "--public-url must start with https:// (e.g. https://abc123.ngrok.app)"
    )


# --- precedence: flags > environment > .env > defaults ---------------------------------------------------


def test_flags_win_over_the_environment():
    env = {**ENV, "VOICE2FA_LISTEN": "0.0.0.0:7000"}
    settings = config.send_settings(env, public_url="http://127.0.0.1:7001", listen_flag="127.0.0.1:7001", ring_timeout=9)
    assert settings.public_url == "http://127.0.0.1:7001"
    assert settings.listen == Listen("127.0.0.1", 7001)
    assert settings.timing.ring_timeout == 9
    assert settings.warnings == (
        UNASSIGNED,
        "--public-url is a loopback address: SignalWire cannot reach it (a local stand-in can)",
    )


def test_environment_wins_over_defaults():
    settings = config.send_settings({**ENV, "VOICE2FA_LISTEN": "0.0.0.0:7000", "VOICE2FA_API_TIMEOUT": "3"})
    assert settings.listen == Listen("0.0.0.0", 7000)
    assert settings.timing.api_timeout == 3.0


def write_dotenv(directory: Path, text: str) -> Path:
    path = directory / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_environment_without_a_dotenv_is_the_environment(clean_env):
    assert environment.load_environment(environ={"A": "1"}) == {"A": "1"}
    assert environment.load_environment(clean_env, {"A": "1"}) == {"A": "1"}


def test_dotenv_fills_in_what_the_environment_lacks(clean_env):
    write_dotenv(clean_env, "SIGNALWIRE_PROJECT=from-file\nexport VOICE2FA_LISTEN='127.0.0.1:6000'\n# comment\n\n")
    assert environment.load_environment(clean_env, {"SIGNALWIRE_TOKEN": "from-env"}) == {
        "SIGNALWIRE_PROJECT": "from-file",
        "VOICE2FA_LISTEN": "127.0.0.1:6000",
        "SIGNALWIRE_TOKEN": "from-env",
    }


def test_dotenv_never_overrides_the_real_environment(clean_env, monkeypatch):
    write_dotenv(clean_env, "SIGNALWIRE_TOKEN=from-file\nVOICE2FA_LISTEN=0.0.0.0:6000\nSIGNALWIRE_PROJECT=from-file\n")
    monkeypatch.setenv("SIGNALWIRE_TOKEN", "from-env")
    monkeypatch.setenv("VOICE2FA_LISTEN", "127.0.0.1:6001")
    env = environment.load_environment()  # the real environment and the working directory
    assert env["SIGNALWIRE_TOKEN"] == "from-env"
    assert env["VOICE2FA_LISTEN"] == "127.0.0.1:6001"
    assert env["SIGNALWIRE_PROJECT"] == "from-file"


def test_an_empty_environment_variable_still_shadows_dotenv(clean_env):
    # python-dotenv's rule: a variable present in the environment is never overridden.
    write_dotenv(clean_env, "SIGNALWIRE_TOKEN=from-file\n")
    assert environment.load_environment(clean_env, {"SIGNALWIRE_TOKEN": ""}) == {"SIGNALWIRE_TOKEN": ""}


def test_dotenv_values_are_not_interpolated(clean_env):
    write_dotenv(clean_env, "A=${HOME}/x\n")
    assert environment.load_environment(clean_env, {"HOME": "/home/op"})["A"] == "${HOME}/x"


def test_full_precedence_flags_over_env_over_dotenv_over_defaults(clean_env):
    write_dotenv(
        clean_env,
        "".join(f"{k}={v}\n" for k, v in ENV.items())
        + "VOICE2FA_LISTEN=127.0.0.1:6000\nVOICE2FA_PUBLIC_URL=https://file.ngrok.app\nVOICE2FA_API_TIMEOUT=7\n",
    )
    environ = {"VOICE2FA_LISTEN": "127.0.0.1:6001", "VOICE2FA_PUBLIC_URL": "https://env.ngrok.app"}
    env = environment.load_environment(clean_env, environ)

    settings = config.send_settings(env)
    assert settings.listen == Listen("127.0.0.1", 6001)  # environment over .env
    assert settings.public_url == "https://env.ngrok.app"
    assert settings.timing.api_timeout == 7.0  # .env over the default
    assert settings.timing.poll_interval == 5.0  # the default
    assert settings.token == TOKEN  # only in .env

    flagged = config.send_settings(env, public_url="https://flag.ngrok.app", listen_flag="127.0.0.1:6002")
    assert flagged.listen == Listen("127.0.0.1", 6002)  # flag over environment
    assert flagged.public_url == "https://flag.ngrok.app"


SECRET_JUNK = f"sk_live {TOKEN}"


def test_a_junk_dotenv_line_is_named_by_number_not_content(clean_env):
    path = write_dotenv(clean_env, f"SIGNALWIRE_PROJECT=p\n# a comment\n{SECRET_JUNK}\nVOICE2FA_LISTEN=127.0.0.1:1\n")
    error = config_error(environment.load_environment, clean_env, {})
    assert error.message == f"{path} line 3 is not KEY=VALUE: fix or remove that line"
    assert TOKEN not in error.message
    assert "sk_live" not in error.message
    assert error.hint is None


def test_a_junk_dotenv_line_in_the_working_directory(clean_env):
    write_dotenv(clean_env, f"{SECRET_JUNK}\n")
    error = config_error(environment.load_environment)
    assert error.message == f"{Path.cwd() / '.env'} line 1 is not KEY=VALUE: fix or remove that line"
    assert TOKEN not in error.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f'SIGNALWIRE_TOKEN="{TOKEN}\nA=1\n', 1),  # an unterminated quote
        (f"A=1\n={TOKEN}\n", 2),
        (f"A=1\nB=2\nSIGNALWIRE_TOKEN: {TOKEN}\n", 3),
    ],
)
def test_parse_dotenv_junk_lines(text, line):
    error = config_error(environment.parse_dotenv, text, "/srv/app/.env")
    assert error.message == f"/srv/app/.env line {line} is not KEY=VALUE: fix or remove that line"
    assert TOKEN not in error.message


def test_dotenv_that_is_not_utf8(clean_env):
    path = clean_env / ".env"
    path.write_bytes(b"SIGNALWIRE_TOKEN=\xff\xfe" + TOKEN.encode() + b"\n")
    error = config_error(environment.load_environment, clean_env, {})
    assert error.message == f"{path} is not UTF-8 text: fix or remove it"
    assert TOKEN not in error.message


def test_dotenv_that_cannot_be_read(clean_env):
    (clean_env / ".env").mkdir()
    assert config_error(environment.load_environment, clean_env, {}).message == (
        f"{clean_env / '.env'} is a directory, not a regular file: remove it or replace it with a file"
    )


# --- secrets never shown -----------------------------------------------------------------------------------


def test_secrets_are_not_in_the_repr_of_settings():
    settings = config.send_settings(ENV)
    assert settings.token == TOKEN
    assert settings.signing_key == SIGNING_KEY
    for text in (repr(settings), str(settings)):
        for secret in SECRETS:
            assert secret not in text
    assert "token=" not in repr(settings)
    assert "signing_key=" not in repr(settings)


BAD_OVERRIDES = [
    {"SIGNALWIRE_SPACE": "http://acme.signalwire.com"},
    {"SIGNALWIRE_SPACE": f"https://proj:{TOKEN}@acme.signalwire.com"},
    {"SIGNALWIRE_SPACE": "https://acme.signalwire.com/api"},
    {"SIGNALWIRE_PROJECT": f"proj:{TOKEN}"},
    {"SIGNALWIRE_TOKEN": TOKEN[:10] + "\r\n" + TOKEN[10:]},
    {"SIGNALWIRE_TOKEN": "\x07" + TOKEN},
    {"SIGNALWIRE_NUMBER": "+1 555"},
    {"VOICE2FA_PUBLIC_URL": f"https://u:{TOKEN}@abc.ngrok.app"},
    {"VOICE2FA_PUBLIC_URL": "https://abc.ngrok.app?x=1"},
    {"VOICE2FA_LISTEN": "nope"},
    {"VOICE2FA_API_TIMEOUT": "500"},
    {"VOICE2FA_POLL_INTERVAL": "abc"},
    {"VOICE2FA_STATE_DIR": "a\x00b"},
    {"SIGNALWIRE_SPACE": ""},
    {"SIGNALWIRE_PROJECT": ""},
    {"SIGNALWIRE_NUMBER": ""},
    {"VOICE2FA_PUBLIC_URL": ""},
]


@pytest.mark.parametrize("overrides", BAD_OVERRIDES)
def test_no_error_message_contains_a_secret(overrides):
    error = config_error(config.send_settings, {**ENV, **overrides})
    for secret in SECRETS:
        assert secret not in error.message
        assert secret not in str(error)
        assert secret not in (error.hint or "")


def test_missing_token_message_does_not_contain_the_signing_key():
    env = {k: v for k, v in ENV.items() if k != "SIGNALWIRE_TOKEN"}
    error = config_error(config.send_settings, env)
    assert SIGNING_KEY not in error.message


# --- a .env that is not the user's own regular file is refused, never read --------------------------------


def test_a_dotenv_fifo_is_refused_at_once(clean_env):
    import os
    import threading

    path = clean_env / ".env"
    os.mkfifo(path)
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(config_error(environment.load_environment, clean_env, {})),
                              daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():  # unblock the reader so the test run can go on, then fail
        with open(path, "w"):
            pass
        pytest.fail("reading a FIFO .env blocked")
    assert outcome[0].message == f"{path} is a FIFO, not a regular file: remove it or replace it with a file"


def test_a_dotenv_symlink_is_refused(clean_env, tmp_path):
    target = tmp_path / "elsewhere.env"
    target.write_text("SIGNALWIRE_SPACE=acme.signalwire.com\n")
    (clean_env / ".env").symlink_to(target)
    assert config_error(environment.load_environment, clean_env, {}).message == (
        f"{clean_env / '.env'} is a symbolic link: voice2fa reads only a regular .env file; copy the file there instead"
    )


@pytest.mark.parametrize("mode", [0o666, 0o602, 0o646])
def test_a_dotenv_writable_by_everyone_is_refused(clean_env, mode):
    path = write_dotenv(clean_env, "SIGNALWIRE_SPACE=evil.example\n")
    path.chmod(mode)
    assert config_error(environment.load_environment, clean_env, {}).message == (
        f"{path} is writable by other users (mode {mode:o}): run `chmod go-w {path}`"
    )


def test_a_dotenv_writable_by_a_shared_group_is_refused(clean_env):
    import grp
    import os
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another group")
    me = pwd.getpwuid(os.geteuid()).pw_name
    shared = next((g for g in grp.getgrall() if set(g.gr_mem) - {me}), None)
    if shared is None:
        pytest.skip("no group with other members on this machine")
    path = write_dotenv(clean_env, "A=1\n")
    os.chown(path, -1, shared.gr_gid)
    path.chmod(0o660)
    assert config_error(environment.load_environment, clean_env, {}).message == (
        f"{path} is writable by other users (mode 660): run `chmod go-w {path}`"
    )


def test_a_dotenv_writable_by_the_users_own_group_is_read(clean_env):
    import grp
    import os
    import pwd

    me = pwd.getpwuid(os.geteuid())
    if set(grp.getgrgid(me.pw_gid).gr_mem) - {me.pw_name}:
        pytest.skip("the user's primary group has other members here")
    path = write_dotenv(clean_env, "A=1\n")
    os.chown(path, -1, me.pw_gid)
    path.chmod(0o664)  # umask 002 with a private group: the usual Debian set-up
    assert environment.load_environment(clean_env, {}) == {"A": "1"}


def test_a_dotenv_of_another_user_is_refused(clean_env):
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root to give a file away")
    path = write_dotenv(clean_env, "SIGNALWIRE_SPACE=evil.example\n")
    os.chown(path, 65534, 65534)
    assert config_error(environment.load_environment, clean_env, {}).message == (
        f"{path} belongs to another user (uid 65534): voice2fa reads only a .env of your own; remove it or run "
        "elsewhere"
    )


def test_an_oversized_dotenv_is_refused(clean_env):
    path = write_dotenv(clean_env, "A=" + "x" * (300 * 1024) + "\n")
    assert config_error(environment.load_environment, clean_env, {}).message == (
        f"{path} is larger than 256 KiB: a .env holds a few settings"
    )


def test_load_environment_remembers_what_came_from_dotenv(clean_env):
    path = write_dotenv(clean_env, "A=1\nB=2\n")
    env = environment.load_environment(clean_env, {"B": "env"})
    assert (env.dotenv, env.from_dotenv) == (path, frozenset({"A"}))
    assert environment.load_environment(clean_env / "nowhere", {}).dotenv is None


# --- every number typed is ASCII digits ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "５", "١٢", "+5", " 5", "5 ", "5.0", "-5", "1e3", "1_000", "0x10", "lots",
                                   "99999999999999999999", "0", "10001"])
def test_max_calls_per_hour_is_ascii_digits_in_range(value):
    assert config_error(config.max_calls_per_hour, {"VOICE2FA_MAX_CALLS_PER_HOUR": value}).message == (
        f"VOICE2FA_MAX_CALLS_PER_HOUR must be a whole number from 1 to 10000, not {value[:40]!r}"
        if len(value) <= 40 else ""
    )


def test_max_calls_per_hour_values():
    assert config.max_calls_per_hour({}) == 30
    assert config.max_calls_per_hour({"VOICE2FA_MAX_CALLS_PER_HOUR": "  "}) == 30
    assert config.max_calls_per_hour({"VOICE2FA_MAX_CALLS_PER_HOUR": "7"}) == 7
    assert config.max_calls_per_hour({"VOICE2FA_MAX_CALLS_PER_HOUR": "10000"}) == 10000


@pytest.mark.parametrize("port", ["５000", "5٠00", "+5000", "5_000"])
def test_listen_port_is_ascii_digits(port):
    assert config_error(config.listen, {"VOICE2FA_LISTEN": f"127.0.0.1:{port}"}, None).message == (
        f"VOICE2FA_LISTEN '127.0.0.1:{port}' is not HOST:PORT (e.g. 127.0.0.1:5000)"
    )


@pytest.mark.parametrize("value", ["acme.signalwire.com:４４３", "acme.signalwire.com:+443"])
def test_space_port_is_ascii_digits(value):
    assert config_error(config.parse_space, value).message == f"SIGNALWIRE_SPACE has an invalid port: {SPACE_HINT}"


@pytest.mark.parametrize("value", ["USA,France", "US,FRA", "ＵＳ", "us;ca"])
def test_allowed_countries_are_iso_codes(value):
    error = config_error(config.allowed_countries, {"VOICE2FA_ALLOWED_COUNTRIES": value}, "US")
    assert error.message.startswith("VOICE2FA_ALLOWED_COUNTRIES lists ")
    assert error.message.endswith(": give ISO country codes such as US,CA,GB")


# --- the default region: the same for send, verify and sessions ---------------------------------------------


def test_default_region_from_the_setting_then_the_caller_id_then_us():
    from voice2fa_cli.phone import Region

    assert config.default_region({}) == Region("US", None)
    assert config.default_region({"SIGNALWIRE_NUMBER": "+33612345678"}) == Region("FR", "SIGNALWIRE_NUMBER")
    assert config.default_region({"SIGNALWIRE_NUMBER": "+33612345678", "VOICE2FA_DEFAULT_REGION": "gb"}) == (
        Region("GB", "VOICE2FA_DEFAULT_REGION")
    )


@pytest.mark.parametrize("value", ["UK", "USA", "ＵＳ", "1", "zz"])
def test_a_bad_default_region_is_named(value):
    assert config_error(config.default_region, {"VOICE2FA_DEFAULT_REGION": value}).message == (
        f"VOICE2FA_DEFAULT_REGION {value!r} is not an ISO country code: give one such as US, GB or FR"
    )


def test_number_input_reads_national_numbers_in_the_default_region():
    assert config.number_input({}, "(555) 123-4567").e164 == "+15551234567"
    assert config.number_input({"SIGNALWIRE_NUMBER": "+447700900123"}, "020 7946 0958").e164 == "+442079460958"
    assert config.number_input({"VOICE2FA_DEFAULT_REGION": "FR"}, "06 12 34 56 78").e164 == "+33612345678"


def test_number_input_needs_no_region_for_an_international_number():
    # A broken SIGNALWIRE_NUMBER does not matter to a number that carries its country code.
    env = {"SIGNALWIRE_NUMBER": "garbage", "VOICE2FA_DEFAULT_REGION": ""}
    assert config.number_input(env, "+33 6 12 34 56 78").e164 == "+33612345678"
    assert config_error(config.number_input, env, "555 123 4567").message.startswith("SIGNALWIRE_NUMBER 'garbage'")


# --- through the CLI: a bad number is exit 2 naming what is wrong, never exit 70 ----------------------------


@pytest.mark.parametrize("value", ["²", "５", "+5", " 5", "5.0"])
def test_a_bad_numeric_setting_is_exit_2_naming_it(cli_env, sandbox, value):
    from tests.helpers import NUMBER, run_cli

    cli_env["VOICE2FA_MAX_CALLS_PER_HOUR"] = value
    result = run_cli(["send", NUMBER], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, f"error: VOICE2FA_MAX_CALLS_PER_HOUR must be a whole number from 1 to 10000, not {value!r}"
    )
    assert sandbox.requests == []


@pytest.mark.parametrize(
    ("args", "flag", "value"),
    [
        (["send", "+15551234567", "--digits"], "--digits", "６"),
        (["send", "+15551234567", "--digits"], "--digits", "+6"),
        (["send", "+15551234567", "--digits"], "--digits", " 6"),
        (["send", "+15551234567", "--digits"], "--digits", "0_6"),
        (["send", "+15551234567", "--ring-timeout"], "--ring-timeout", "³0"),
        (["send", "+15551234567", "--max-attempts"], "--max-attempts", "٣"),
        (["sessions", "--limit"], "--limit", "²"),
    ],
)
def test_numeric_flags_take_ascii_digits_only(args, flag, value, capfd):
    from voice2fa_cli import cli

    with pytest.raises(SystemExit) as info:
        cli.main.main([*args, value], prog_name="voice2fa")
    assert info.value.code == 2
    command = "voice2fa " + args[0]
    assert capfd.readouterr().err.splitlines() == [
        f"error: Invalid value for '{flag}': {value!r} is not a whole number in the digits 0-9. "
        f"(see `{command} --help`)"
    ]


@pytest.mark.parametrize("value", [" 60", "60 ", "+60", "６0"])
def test_ttl_takes_ascii_digits_only(value, capfd):
    from voice2fa_cli import cli

    with pytest.raises(SystemExit) as info:
        cli.main.main(["send", "+15551234567", "--ttl", value], prog_name="voice2fa")
    assert info.value.code == 2
    assert "give seconds (e.g. 300) or minutes (e.g. 5m)" in capfd.readouterr().err
