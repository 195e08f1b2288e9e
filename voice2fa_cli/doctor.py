"""`voice2fa doctor`: every check that can be made before a call costs money, each with its fix.

Each setting is read by the very function `send` uses (config.py), one row per setting, and
every row is shown even when others fail. Then the checks: the API is asked for the account
only, the callback server is started on --listen and its health path fetched through the
public URL, and the store in the state dir is opened as `verify` opens it. Nothing is dialed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from voice2fa_cli import config, environment, phone, policy
from voice2fa_cli.errors import ConfigError, Problem, ProviderError, StoreError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"

T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip (not checked: something it needs failed)
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class Report:
    checks: list[Check]
    dotenv: Path | None  # the .env that was read, if any

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """The last line: ready, or how many problems."""
        problems = self.problems
        if problems:
            names = ", ".join(c.name for c in problems)
            return f"{len(problems)} problem{'s' if len(problems) != 1 else ''}: {names}"
        warnings = sum(c.status == WARN for c in self.checks)
        return "ready" + (f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else "")

    def json(self) -> dict:
        return {
            "ok": self.ok,
            "problems": len(self.problems),
            "dotenv": str(self.dotenv) if self.dotenv else None,
            "checks": [c.__dict__ for c in self.checks],
        }


def _setting(checks: list[Check], name: str, read: Callable[[], T], show: Callable[[T], str],
             warn: Callable[[T], str | None] = lambda _: None) -> T | None:
    """One row: the setting read by send's own function; its value, or None when it failed."""
    try:
        got = read()
    except ConfigError as exc:
        checks.append(Check(name, FAIL, exc.message, exc.hint))
        return None
    warning = warn(got)
    checks.append(Check(name, WARN if warning else OK, show(got) + (f" ({warning})" if warning else "")))
    return got


def _default(env: Mapping[str, str], name: str, text: str) -> str | None:
    return None if config.value(env, name) is not None else text


def load(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> tuple[Mapping[str, str], Check]:
    """The environment as `send` reads it, and the `.env` row; a refused `.env` is a failed row
    (the real environment alone is used for the rest)."""
    where = (cwd or Path.cwd()) / ".env"
    try:
        env = environment.load_environment(cwd, environ)
    except ConfigError as exc:
        return environment.Environment(os.environ if environ is None else environ), Check(".env", FAIL, exc.message)
    if env.dotenv is None:
        return env, Check(".env", OK, f"none in {where.parent} (the environment only)")
    count = len(env.from_dotenv)
    return env, Check(".env", OK, f"read {env.dotenv}: {count} setting{'s' if count != 1 else ''} taken from it "
                                  "(the real environment wins over it)")


async def run(public_url: str | None, listen_flag: str | None, cwd: Path | None = None,
              environ: Mapping[str, str] | None = None, delivery_flag: str | None = None) -> Report:
    env, dotenv_row = load(cwd, environ)
    checks: list[Check] = [dotenv_row]
    add = checks.append

    space = _setting(checks, "SIGNALWIRE_SPACE", lambda: config.space(env), str,
                     lambda s: "plain http: a local stand-in only" if s.startswith("http://") else None)
    project = _setting(checks, "SIGNALWIRE_PROJECT", lambda: config.project(env), lambda p: p[:8] + "…")
    token = _setting(checks, "SIGNALWIRE_TOKEN", lambda: config.token(env), lambda t: f"set ({len(t)} characters)")
    caller = _setting(checks, "SIGNALWIRE_NUMBER", lambda: config.caller(env), lambda n: n.e164,
                      lambda n: None if n.known else "possible, but not known to be assigned")
    key = config.signing_key(env)
    add(Check("SIGNALWIRE_SIGNING_KEY", OK, f"set ({len(key)} characters)") if key else
        Check("SIGNALWIRE_SIGNING_KEY", WARN, "not set: webhook signatures are not checked",
              "copy the signing key from the API page of your SignalWire Dashboard"))
    if config.value(env, "VOICE2FA_CALLER_NAME") is None:  # who the call says is calling
        add(Check("VOICE2FA_CALLER_NAME", WARN, "not set: the call does not say who is calling",
                  "set VOICE2FA_CALLER_NAME to the name the callee knows you by, e.g. Acme support"))
    else:
        _setting(checks, "VOICE2FA_CALLER_NAME", lambda: config.caller_name(env, None), str)
    how = _setting(checks, "VOICE2FA_DELIVERY", lambda: config.delivery(env, delivery_flag),
                   lambda d: d + (" (from --delivery)" if delivery_flag is not None else ""))
    if how == "inline":
        _setting(checks, "VOICE2FA_MAX_PRICE_PER_MINUTE", lambda: config.max_price_per_minute(env),
                 lambda p: "not set: no cost cap" if p is None else f"{p:g} US dollars a minute at most")
        try:
            add(_state(env))
            checks.extend(_store(env))
            timeout = _limits_and_timing(checks, env, caller)
            add(await _credentials(space, project, token, timeout))
            add(await _voice_permission(space, project, token, timeout, checks[-1]))
            add(await _caller_id(space, project, token, caller, timeout, checks[-2]))
        finally:
            add(Check("tunnel", OK, "not needed: the inline delivery carries the whole call in the dial "
                                    "(nothing listens here, nothing reaches this machine)"))
        return Report(checks, getattr(env, "dotenv", None))
    url = _setting(checks, "VOICE2FA_PUBLIC_URL", lambda: config.public_url_setting(env, public_url),
                   lambda u: u[0] + (" (from --public-url)" if public_url is not None else ""),
                   lambda u: "; ".join(u[1]) or None)
    where = _setting(checks, "VOICE2FA_LISTEN", lambda: config.listen(env, listen_flag),
                     lambda w: f"{w}" + (" (from --listen)" if listen_flag is not None else ""))
    sock = None
    if where is not None:
        from voice2fa_cli.web.server import bind

        try:
            sock = bind(where.host, where.port, "--listen" if listen_flag is not None else "VOICE2FA_LISTEN")
        except ConfigError as exc:
            checks[-1] = Check("VOICE2FA_LISTEN", FAIL, exc.message,
                               "stop the program that holds it, or choose another port with --listen or "
                               "VOICE2FA_LISTEN (and point the tunnel at it)"
                               if exc.kind is Problem.ADDRESS_IN_USE else None)
    try:
        add(_state(env))
        checks.extend(_store(env))
        timeout = _limits_and_timing(checks, env, caller)

        add(await _credentials(space, project, token, timeout))
        add(await _tunnel(url[0] if url else None, where, sock, timeout))
    finally:
        if sock is not None:
            sock.close()
    return Report(checks, getattr(env, "dotenv", None))


def _limits_and_timing(checks: list[Check], env: Mapping[str, str], caller: phone.Number | None) -> float:
    """The send policy's, the region's, the Space host's and the timing's rows; the API timeout."""
    add = checks.append
    _setting(checks, "VOICE2FA_ALLOWED_COUNTRIES",
             lambda: config.allowed_countries(env, caller.region if caller else "US"),
             lambda c: ",".join(sorted(c)) + (" (default: the caller ID's country)"
                                              if config.value(env, "VOICE2FA_ALLOWED_COUNTRIES") is None else ""))
    _setting(checks, policy.ALLOW_NUMBER_TYPES, lambda: config.allowed_number_types(env),
             lambda types: (f"{','.join(sorted(types))} allowed; still refused: "
                            f"{', '.join(sorted(set(policy.REVENUE_SHARING) - types)) or 'none'}") if types
             else "not set: premium-rate, shared-cost, personal and UAN numbers are refused (toll fraud)",
             lambda types: "these numbers charge the caller extra" if types else None)
    _setting(checks, "VOICE2FA_MAX_CALLS_PER_HOUR", lambda: config.max_calls_per_hour(env),
             lambda n: f"{n}" + (" (default)" if config.value(env, "VOICE2FA_MAX_CALLS_PER_HOUR") is None else ""))
    if config.value(env, config.DEFAULT_REGION) is None and caller is None and \
            config.value(env, "SIGNALWIRE_NUMBER") is not None:
        add(Check(config.DEFAULT_REGION, SKIP, "not set: the caller ID's country, once SIGNALWIRE_NUMBER is fixed"))
    else:
        _setting(checks, config.DEFAULT_REGION, lambda: config.default_region(env),
                 lambda r: f"{r.describe()}: numbers without a country code are read as dialed there")
    allowed = config.value(env, config.ALLOW_SPACE_HOST)
    if allowed is None:
        add(Check(config.ALLOW_SPACE_HOST, OK, "not set: credentials go only to *.signalwire.com or loopback"))
    else:
        _setting(checks, config.ALLOW_SPACE_HOST, lambda: config.allowed_space_host(env),
                 lambda h: f"{h}", lambda h: "the API credentials may be sent to this host")
    timeout = _setting(checks, "VOICE2FA_API_TIMEOUT", lambda: config.api_timeout(env),
                       _seconds(env, "VOICE2FA_API_TIMEOUT"))
    _setting(checks, "VOICE2FA_POLL_INTERVAL", lambda: config.poll_interval(env),
             _seconds(env, "VOICE2FA_POLL_INTERVAL"))
    _setting(checks, "VOICE2FA_WEBHOOK_GRACE", lambda: config.webhook_grace(env),
             _seconds(env, "VOICE2FA_WEBHOOK_GRACE"))
    return timeout if timeout is not None else config.Timing.api_timeout


def _store(env: Mapping[str, str]) -> list[Check]:
    """Where sessions live. With the shared store: the connection, the key against the
    store's fingerprint, and whether the server keeps its data across a restart."""
    name = "VOICE2FA_STORE"
    try:
        spec = config.store_spec(env)
    except ConfigError as exc:
        return [Check(name, FAIL, exc.message, exc.hint)]
    if not spec.shared:
        return [Check(name, OK, "not set: sessions in SQLite in the state dir (this machine only)")]
    from voice2fa_cli.stores import open_store

    try:
        store = open_store(spec)
    except StoreError as exc:
        fix = None
        if exc.kind is Problem.WRONG_KEY:
            fix = "copy the key file every other machine uses and set VOICE2FA_KEY_FILE to it"
        elif exc.kind is Problem.UNREACHABLE:
            fix = "start Redis, or check the host, port or socket in VOICE2FA_STORE and the network to it"
        return [Check(name, FAIL, exc.message, fix)]
    from voice2fa_cli.stores.redis import RedisStore

    with store:
        assert isinstance(store, RedisStore)  # a spec with a URL opens the shared store
        try:
            aof, rdb = store.persistence()
        except StoreError as exc:
            return [Check(name, FAIL, exc.message)]
        mine = store.fingerprint_hex
    rows = [Check(name, OK, f"{spec.describe()}: reached, and it was set up with this machine's key")]
    if spec.key_file is None:
        rows.append(Check("VOICE2FA_KEY_FILE", WARN,
                          f"not set: this machine's own key (fingerprint {mine}); other machines are refused",
                          "copy the key file to every machine (chmod 600) and set VOICE2FA_KEY_FILE to it"))
    else:
        rows.append(Check("VOICE2FA_KEY_FILE", OK, f"{spec.key_file} (fingerprint {mine})"))
    if aof or rdb:
        kept = " and ".join(w for w, on in (("the append-only file", aof), ("RDB snapshots", rdb)) if on)
        rows.append(Check("store persistence", OK, f"the server keeps its data in {kept}"))
    else:
        rows.append(Check("store persistence", WARN,
                          "neither AOF nor RDB: lockouts, send counts and open codes vanish when Redis restarts",
                          "run Redis with `appendonly yes` (or `save` snapshots)"))
    return rows


def _seconds(env: Mapping[str, str], name: str) -> Callable[[object], str]:
    return lambda s: f"{s:g} s" + (" (default)" if config.value(env, name) is None else "")


async def _credentials(space: str | None, project: str | None, token: str | None, timeout: float) -> Check:
    if not (space and project and token):
        missing = [n for n, v in (("SIGNALWIRE_SPACE", space), ("SIGNALWIRE_PROJECT", project),
                                  ("SIGNALWIRE_TOKEN", token)) if not v]
        return Check("credentials", SKIP, f"not checked: {', '.join(missing)} above must be fixed first")
    from voice2fa_cli.signalwire.client import Client

    host = space.split("://", 1)[1]
    try:
        async with Client(f"{space}{config.API_PATH}/Accounts/{project}", project, token, timeout=timeout) as client:
            account = await client.fetch_account()
    except ProviderError as exc:
        if exc.auth_refused:
            fix = "check SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN against the API page of your SignalWire Dashboard"
        elif exc.unreachable:
            fix = (f"check this machine's network connection, and that {host} is your Space's domain "
                   "(SIGNALWIRE_SPACE)")
        elif exc.timed_out:
            fix = f"check this machine's network connection to {host}, or raise VOICE2FA_API_TIMEOUT"
        else:
            fix = None
        return Check("credentials", FAIL, exc.message, fix)
    return Check("credentials", OK, f"accepted by {host} (account {account.get('status') or 'active'!s})")


async def _voice_permission(space: str | None, project: str | None, token: str | None, timeout: float,
                            credentials: Check) -> Check:
    """The inline delivery's Calling and Voice Logs APIs need the token's Voice permission: one
    request that needs it and changes nothing (the newest voice log)."""
    if credentials.status != OK or not (space and project and token):
        return Check("voice permission", SKIP, "not checked: the credentials above must be fixed first")
    from voice2fa_cli.signalwire.calling import CallingClient

    try:
        async with CallingClient(space, project, token, timeout=timeout) as client:
            await client.newest_log()
    except ProviderError as exc:
        fix = ("give the API token the Voice permission on the API page of your SignalWire Dashboard"
               if exc.status in (401, 402, 403) else None)
        return Check("voice permission", FAIL, exc.message, fix)
    return Check("voice permission", OK, "the API token may dial and read voice logs (Calling API)")


async def _caller_id(space: str | None, project: str | None, token: str | None, caller: phone.Number | None,
                     timeout: float, credentials: Check) -> Check:
    """The inline dial's `from` must be a number of the project: the numbers list, filtered."""
    if credentials.status != OK or caller is None or not (space and project and token):
        return Check("caller ID", SKIP, "not checked: the credentials and SIGNALWIRE_NUMBER above must be fixed first")
    from voice2fa_cli.signalwire.client import Client

    try:
        async with Client(f"{space}{config.API_PATH}/Accounts/{project}", project, token, timeout=timeout) as client:
            owned = await client.owns_number(caller.e164)
    except ProviderError as exc:
        if exc.status in (401, 403):
            return Check("caller ID", WARN, "not checked: the API token may not list the project's numbers",
                         "give the token the Numbers permission to have this checked, or check SIGNALWIRE_NUMBER "
                         "on the Phone Numbers page")
        return Check("caller ID", FAIL, exc.message)
    if not owned:
        return Check("caller ID", FAIL, f"{caller.e164} is not a number of this project: SignalWire refuses to call "
                                        "from it", "pick one from the Phone Numbers page of your SignalWire Dashboard")
    return Check("caller ID", OK, f"{caller.e164} is a number of this project")


async def _tunnel(url: str | None, where, sock, timeout: float) -> Check:
    if url is None or sock is None:
        failed = " and ".join(n for n, bad in (("VOICE2FA_PUBLIC_URL", url is None), ("VOICE2FA_LISTEN", sock is None))
                              if bad)
        return Check("tunnel", SKIP, f"not checked: {failed} above must be fixed first")
    from voice2fa_cli import flow
    from voice2fa_cli.voice.webhook import ServerConfig, make_app
    from voice2fa_cli.web.server import Server

    server_config = ServerConfig(url, None)
    fix = (f"start a tunnel that forwards to {where} (e.g. `ngrok http {where.port}`) and set VOICE2FA_PUBLIC_URL "
           "(or --public-url) to its URL")
    try:
        async with Server(make_app(server_config), sock):
            await flow.preflight(server_config, where, timeout,
                                 hint=f"is the tunnel running and forwarding to {where}?")
    except ConfigError as exc:
        return Check("tunnel", FAIL, exc.message, fix)
    return Check("tunnel", OK, f"{url} reaches this machine's {where}")


def _state(env: Mapping[str, str]) -> Check:
    """The state dir, opened the way `verify` and `sessions` open it."""
    name = "VOICE2FA_STATE_DIR"
    try:
        path = config.state_dir(env)
    except ConfigError as exc:
        return Check(name, FAIL, exc.message)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Check(name, OK, f"{path} (not created yet: the first send creates it)")
    except OSError as exc:
        return Check(name, FAIL, f"{path} cannot be used: {exc.strerror}",
                     "set VOICE2FA_STATE_DIR to a directory of your own")
    if not stat.S_ISDIR(st.st_mode):
        return Check(name, FAIL, f"the state dir {path} exists and is not a directory",
                     "move that file away, or set VOICE2FA_STATE_DIR to a directory of your own")
    from voice2fa_cli import sessions

    try:
        _, rows = sessions.recent_sessions(path, 1)
    except StoreError as exc:
        return Check(name, FAIL, exc.message, exc.hint)
    return Check(name, OK, f"{path}" + ("" if rows else " (no sessions yet)"))
