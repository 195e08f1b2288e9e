"""`voice2fa serve` from the command line: bind the three listeners (a bad address fails before
anything starts), serve until SIGTERM or SIGINT, then shut down gracefully (exit 0)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping

from voice2fa_cli import config
from voice2fa_cli.errors import ConfigError
from voice2fa_cli.signals import until_stopped

# The cyclic collector, once serving: what start-up made is frozen out of its passes (imports,
# apps, routes: most of the heap, never garbage), and the youngest generation is collected after
# GC_YOUNG new objects rather than 700, so that a burst of requests meets fewer and shorter
# pauses. Measured with bench/serve_api.py --rate 10000: the webhook's p99 from up to 99 ms to
# under 50 (the full collections of the burst went from 10-40 ms to about 6).
GC_YOUNG = 5000


def settle_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])


def run(env: Mapping[str, str], *, listen_api: str, listen: str | None, public_url: str | None, sandbox: bool,
        drain: float, preflight: bool, listen_metrics: str = "127.0.0.1:9464", delivery: str | None = None) -> None:
    try:
        import prometheus_client  # noqa: F401 (serve's one extra dependency, checked before anything binds)
    except ImportError:
        raise ConfigError("voice2fa serve needs the prometheus-client package: "
                          "pip install '.[serve]' in voice2fa's checkout") from None
    from voice2fa_cli.serve.log import Log
    from voice2fa_cli.serve.server import Serving
    from voice2fa_cli.web.server import bind

    api = config.parse_listen(listen_api, "--listen-api")
    scrape = config.parse_listen(listen_metrics, "--listen-metrics")
    inline = config.delivery(env, delivery) == "inline"
    if inline and (listen is not None or public_url is not None):
        raise ConfigError("--listen and --public-url are the webhook delivery's: the inline delivery has no "
                          "webhook listener")
    hook: config.Listen | None = None  # the inline delivery: nothing inbound but the API
    if not inline:
        hook = (config.parse_listen(listen, "--listen") if listen is not None
                else config.Listen("127.0.0.1", 0) if sandbox else config.listen(env, None))
    if hook is not None and not sandbox and public_url is None and config.value(env, "VOICE2FA_PUBLIC_URL") is None:
        raise ConfigError("serve needs the public URL that reaches --listen: --public-url or VOICE2FA_PUBLIC_URL "
                          "(or --sandbox to try it with no account)")
    log = Log()

    async def main() -> None:
        socks = [bind(api.host, api.port, "--listen-api")]
        try:
            socks.append(bind(scrape.host, scrape.port, "--listen-metrics"))
            if hook is not None:
                socks.append(bind(hook.host, hook.port, "--listen"))
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        api_sock, metrics_sock, hook_sock = socks[0], socks[1], (socks[2] if hook is not None else None)
        with until_stopped() as stop:
            async with Serving(env, api_sock=api_sock, webhook_sock=hook_sock, sandbox=sandbox, log=log,
                               public_url=public_url, drain=drain, preflight=preflight, metrics_sock=metrics_sock,
                               delivery="inline" if inline else "webhook"):
                settle_collector()
                await stop.wait()

    asyncio.run(main())
