"""A webhook server for the load benchmarks, run as its own process by bench/run.py.

    python bench/serve.py [--port 0] [--signing-key KEY] [--key 7|none] [--calls 1]
    python bench/serve.py --bare [--port 0]

Real mode builds the product app (voice2fa_cli.voice.webhook.make_app) with
ServerConfig("http://127.0.0.1:PORT", signing_key), registers --calls live CallState objects
(the first one is the one under load, the rest only fill the token table), and serves it the
way the product does (web_server.bind + web_server.Server: AppRunner/SockSite, no access log).

Bare mode serves, the same way, a handler that awaits request.post() and returns 200: the
baseline of what aiohttp itself costs for one form POST.

Once listening it prints one JSON line on stdout ({"port", "token", "call_sid", "mode"}) and
serves until SIGTERM/SIGINT (or --max-seconds, a safety bound). With --profile FILE it runs
under cProfile and writes the stats to FILE on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from aiohttp import web

HOST = "127.0.0.1"  # loopback only
CALL_SID = "CA" + "0123456789abcdef" * 2


async def bare_handler(request: web.Request) -> web.Response:
    await request.post()
    return web.Response(status=200)


def build_bare() -> tuple[web.Application, dict]:
    app = web.Application()
    app.router.add_route("*", "/v/{token}{tail:(/key|/status)?}", bare_handler)
    return app, {"token": "bare", "call_sid": CALL_SID}


def product():
    """The product's modules (webhook, the web server, speech, the call's state) in this tree's
    layout, or in the one before voice/ and web/ (for `run.py --before` an older tree)."""
    try:
        from voice2fa_cli.voice import call, speech, webhook
        from voice2fa_cli.web import server
    except ImportError:
        from voice2fa_cli import speech, webhook  # type: ignore[no-redef]

        call = server = webhook  # type: ignore[assignment]
    return webhook, server, speech, call.CallState


def build_real(port: int, signing_key: str | None, key: str | None, calls: int) -> tuple[web.Application, dict]:
    webhook, _, speech, call_state = product()

    config = webhook.ServerConfig(public_url=f"http://{HOST}:{port}", signing_key=signing_key)
    app = webhook.make_app(config)
    main = None
    for i in range(max(1, calls)):
        # status stays "queued" (not final): the call is live, so the routes never answer 410
        call = call_state(session_id=f"bench-{i}", code="482913", voice=speech.Voice(), key=key)
        if i == 0:
            call.call_sid = CALL_SID
            main = call
        webhook.register(app, call)
    assert main is not None
    return app, {"token": main.token, "call_sid": CALL_SID}


async def serve(args: argparse.Namespace) -> None:
    webhook, web_server, _, _ = product()
    sock = web_server.bind(HOST, args.port, what="bench")
    port = sock.getsockname()[1]
    if args.bare:
        app, info = build_bare()
    else:
        key = None if args.key.lower() == "none" else args.key
        app, info = build_real(port, args.signing_key or None, key, args.calls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with web_server.Server(app, sock):
        code = webhook.__file__  # which voice2fa_cli is served (run.py --before checks it)
        print(json.dumps({"mode": "bare" if args.bare else "real", "port": port, "code": code, **info}), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
        except asyncio.TimeoutError:
            print("serve.py: --max-seconds reached, stopping", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bare", action="store_true", help="serve a bare aiohttp form handler instead")
    parser.add_argument("--signing-key", default="bench-signing-key", help="'' for no signature checks")
    parser.add_argument("--key", default="7", help="the gate key the call asks for; 'none' reads the code at once")
    parser.add_argument("--calls", type=int, default=1, help="how many live calls to register")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long whatever happens")
    parser.add_argument("--profile", metavar="FILE", help="run under cProfile, write pstats to FILE")
    args = parser.parse_args()
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        try:
            asyncio.run(serve(args))
        finally:
            prof.disable()
            prof.dump_stats(args.profile)
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
