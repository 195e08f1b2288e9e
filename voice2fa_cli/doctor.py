"""`voice2fa doctor`: every check that can be made before a call costs money, each with its fix.

Doctor asks the API nothing but the account, starts the callback server on --listen and
fetches its health path through the public URL, and looks at the state dir. Nothing is dialed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from voice2fa_cli import config, phone
from voice2fa_cli.errors import ConfigError, ProviderError

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str | None = None


def _mask(value: str) -> str:
    return f"set ({len(value)} characters)"


async def run(env: Mapping[str, str], public_url: str | None, listen_flag: str | None) -> list[Check]:
    checks: list[Check] = []
    add = checks.append

    space = None
    raw = config.value(env, "SIGNALWIRE_SPACE")
    try:
        if raw is None:
            raise ConfigError("not set")
        space = config.parse_space(raw)
        add(Check("SIGNALWIRE_SPACE", WARN if space.startswith("http://") else OK,
                  space + (" (plain http: a local stand-in only)" if space.startswith("http://") else "")))
    except ConfigError as exc:
        add(Check("SIGNALWIRE_SPACE", FAIL, exc.message, config.HINTS["SIGNALWIRE_SPACE"]))

    project = config.value(env, "SIGNALWIRE_PROJECT")
    add(Check("SIGNALWIRE_PROJECT", OK, project[:8] + "…") if project else
        Check("SIGNALWIRE_PROJECT", FAIL, "not set", config.HINTS["SIGNALWIRE_PROJECT"]))
    token = config.value(env, "SIGNALWIRE_TOKEN")
    add(Check("SIGNALWIRE_TOKEN", OK, _mask(token)) if token else
        Check("SIGNALWIRE_TOKEN", FAIL, "not set", config.HINTS["SIGNALWIRE_TOKEN"]))

    caller = config.value(env, "SIGNALWIRE_NUMBER")
    if caller is None:
        add(Check("SIGNALWIRE_NUMBER", FAIL, "not set", config.HINTS["SIGNALWIRE_NUMBER"]))
    else:
        try:
            number = phone.parse(caller, "SIGNALWIRE_NUMBER")
            add(Check("SIGNALWIRE_NUMBER", OK if number.known else WARN,
                      number.e164 + ("" if number.known else " (possible, but not known to be assigned)")))
        except ConfigError as exc:
            add(Check("SIGNALWIRE_NUMBER", FAIL, exc.message, config.HINTS["SIGNALWIRE_NUMBER"]))

    key = config.value(env, "SIGNALWIRE_SIGNING_KEY")
    add(Check("SIGNALWIRE_SIGNING_KEY", OK, _mask(key)) if key else
        Check("SIGNALWIRE_SIGNING_KEY", WARN, "not set: webhook signatures are not checked",
              "copy the signing key from the API page of your SignalWire Dashboard"))

    try:  # who the call says is calling
        name = config.caller_name(env, None)
        add(Check("VOICE2FA_CALLER_NAME", OK, name) if name else
            Check("VOICE2FA_CALLER_NAME", WARN, "not set: the call does not say who is calling",
                  "set VOICE2FA_CALLER_NAME to the name the callee knows you by, e.g. Acme support"))
    except ConfigError as exc:
        add(Check("VOICE2FA_CALLER_NAME", FAIL, exc.message))

    # Credentials: the account, and nothing else, is asked of the API.
    if space and project and token:
        from voice2fa_cli.signalwire import Client

        try:
            async with Client(f"{space}{config.API_PATH}/Accounts/{project}", project, token,
                              timeout=config.timing(env).api_timeout) as client:
                account = await client.fetch_account()
            add(Check("credentials", OK, f"accepted (account {str(account.get('status') or 'active')})"))
        except ProviderError as exc:
            add(Check("credentials", FAIL, exc.message, "check SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN"))
    else:
        add(Check("credentials", FAIL, "not checked: the Space, project or token is missing"))

    checks.extend(await _reachability(env, public_url, listen_flag))
    checks.extend(_state(env))
    return checks


async def _reachability(env: Mapping[str, str], public_url: str | None, listen_flag: str | None) -> list[Check]:
    out: list[Check] = []
    name = "--public-url" if public_url is not None else "VOICE2FA_PUBLIC_URL"
    try:
        where = config.listen(env, listen_flag)
        out.append(Check("listen", OK, str(where)))
    except ConfigError as exc:
        return [Check("listen", FAIL, exc.message, "give HOST:PORT, e.g. 127.0.0.1:5000")]
    raw = public_url if public_url is not None else config.value(env, "VOICE2FA_PUBLIC_URL")
    if raw is None:
        out.append(Check("public URL", FAIL, "VOICE2FA_PUBLIC_URL is not set", config.HINTS["VOICE2FA_PUBLIC_URL"]))
        return out
    try:
        url, warnings = config.parse_public_url(raw, name)
    except ConfigError as exc:
        out.append(Check("public URL", FAIL, exc.message))
        return out
    from voice2fa_cli import flow
    from voice2fa_cli.webhook import Server, ServerConfig, bind, make_app

    server_config = ServerConfig(url, None)
    try:
        sock = bind(where.host, where.port)
        async with Server(make_app(server_config), sock):
            await flow.preflight(server_config, where, config.timing(env).api_timeout)
    except ConfigError as exc:
        out.append(Check("public URL", FAIL, exc.message,
                         f"start a tunnel to {where} (e.g. `ngrok http {where.port}`) and set {name} to its URL"))
        return out
    detail = f"{url} reaches this machine's {where}"
    out.append(Check("public URL", WARN if warnings else OK, detail + ("; " + "; ".join(warnings) if warnings else "")))
    return out


def _state(env: Mapping[str, str]) -> list[Check]:
    from voice2fa_cli.config import DB_NAME, KEY_NAME

    try:
        state_dir = config.state_dir(env)
    except ConfigError as exc:
        return [Check("state dir", FAIL, exc.message)]
    out: list[Check] = []
    for path, what, want in ((state_dir, "state dir", 0o700), (state_dir / KEY_NAME, "key file", 0o600),
                             (state_dir / DB_NAME, "database", 0o600)):
        try:
            st = path.lstat()
        except FileNotFoundError:
            out.append(Check(what, WARN, f"{path} does not exist yet (the first send creates it)"))
            continue
        except OSError as exc:
            out.append(Check(what, FAIL, f"{path}: {exc.strerror}"))
            continue
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid() or mode & 0o077:
            out.append(Check(what, FAIL, f"{path} is mode {mode:o}", f"chmod {want:o} {path}"))
        else:
            out.append(Check(what, OK, f"{path} (mode {mode:o})"))
    return out
