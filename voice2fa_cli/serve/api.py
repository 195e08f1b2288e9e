"""The API listener's app: Twilio Verify v2's voice subset and `/healthz`; and the metrics
listener's app (`/metrics` alone, on a listener of its own: loopback by default). It serves
nothing of the webhook's (and the webhook app nothing of this). Every `/v2` request needs an API
key as HTTP basic auth (20003 otherwise); every answer, errors included, is Twilio-shaped JSON;
no traceback ever reaches a client or the terminal (an unexpected error is a 500 in that shape)."""

from __future__ import annotations

import functools
import time

from aiohttp import web

from voice2fa_cli.errors import Problem, Voice2faError
from voice2fa_cli.serve import shapes
from voice2fa_cli.serve.core import Core
from voice2fa_cli.serve.log import Log, safe_path
from voice2fa_cli.serve.shapes import ApiError
from voice2fa_cli.web.forms import MAX_BODY, read_form
from voice2fa_cli.web.server import LIMITS, Limits, in_handler

CORE = web.AppKey("core", Core)


async def _fields(request: web.Request) -> dict[str, str]:
    fields = await read_form(request, request.app[LIMITS].body)
    if isinstance(fields, web.Response):
        raise ApiError(60200, f"Invalid request body: {(fields.text or '').strip()}", status=fields.status)
    form: dict[str, str] = {}
    for name, value in fields:
        form.setdefault(name, value)  # the first of repeated fields, as Twilio's form parsing
    return form


def _keyed(handler, *, with_service: bool = True):
    """Authenticated (and the path's service looked up, `with_service`), Twilio-shaped errors,
    never a traceback."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        core = request.app[CORE]
        try:
            key = await core.authenticate(request.headers.get("Authorization"))
            if key is None:
                raise ApiError(20003)
            if not with_service:
                return await handler(request, core, key)
            service = await core.service(request.match_info["service"], key)
            return await handler(request, core, service)
        except ApiError as exc:
            return exc.response()
        except Voice2faError as exc:  # the store failed or refused a record: its one line, a 500
            event = "tampered" if exc.kind is Problem.TAMPERED else "error"
            core.log.write(event, path=safe_path(request.path), error=exc.message)
            return shapes.error(20500)
        except Exception as exc:  # the store failed, or a bug: one line in the log, a 500 to the client
            core.log.write("error", path=safe_path(request.path), error=type(exc).__name__)
            return shapes.error(20500)

    return in_handler(guarded)


_guarded = _keyed  # a route under a service
_account = functools.partial(_keyed, with_service=False)  # an account's route (the services themselves)


def _query(request: web.Request) -> dict[str, str]:
    return {name: request.query.getone(name) for name in request.query}


async def services_create(request, core: Core, key) -> web.Response:
    return web.json_response(await core.services.create(await _fields(request), key), status=201)


async def services_list(request, core: Core, key) -> web.Response:
    return web.json_response(await core.services.list(_query(request), key))


async def service_fetch(request, core: Core, key) -> web.Response:
    return web.json_response(await core.services.fetch(request.match_info["service"], key))


async def service_update(request, core: Core, key) -> web.Response:
    return web.json_response(await core.services.update(request.match_info["service"], await _fields(request), key))


async def service_delete(request, core: Core, key) -> web.Response:
    await core.services.delete(request.match_info["service"], key)
    return web.Response(status=204)


async def attempts_list(request, core: Core, key) -> web.Response:
    return web.json_response(await core.attempts.list(_query(request), key))


async def attempt_fetch(request, core: Core, key) -> web.Response:
    return web.json_response(await core.attempts.fetch(request.match_info["sid"], key))


async def attempts_summary(request, core: Core, key) -> web.Response:
    return web.json_response(await core.attempts.summary(_query(request), key))


async def create(request, core: Core, service) -> web.Response:
    return web.json_response(await core.create(service, await _fields(request)), status=201)


async def fetch(request, core: Core, service) -> web.Response:
    return web.json_response(await core.fetch(service, request.match_info["sid"]))


async def update(request, core: Core, service) -> web.Response:
    return web.json_response(await core.update(service, request.match_info["sid"], await _fields(request)))


async def check(request, core: Core, service) -> web.Response:
    return web.json_response(await core.check(service, await _fields(request)))


async def healthz(request: web.Request) -> web.Response:
    core = request.app[CORE]
    if core.draining:
        return web.json_response({"status": "stopping"}, status=503)
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    return request.app[CORE].metrics.exposition()


def make_metrics_app(core: Core, limits: Limits) -> web.Application:
    """`/metrics` alone, for the metrics listener (what it reveals: calls placed, codes delivered,
    check outcomes, refusals, the webhook's latency; no number, no code, no SID)."""
    app = web.Application(client_max_size=1024, middlewares=[_not_found])
    app[CORE] = core
    app[LIMITS] = limits
    app.router.add_get("/metrics", in_handler(metrics))
    return app


@web.middleware
async def _not_found(request: web.Request, handler):
    """Unmatched paths and methods in Twilio's error shape."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        return shapes.error(20004)
    except web.HTTPNotFound:
        return shapes.error(20404)


def make_app(core: Core, limits: Limits) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_not_found])
    app[CORE] = core
    app[LIMITS] = limits  # the time limits and the connection cap (web.server.Server reads them)
    app.router.add_get("/v2/Services", _account(services_list))
    app.router.add_post("/v2/Services", _account(services_create))
    base = "/v2/Services/{service}"
    app.router.add_get(base, _account(service_fetch))
    app.router.add_post(base, _account(service_update))
    app.router.add_delete(base, _account(service_delete))
    app.router.add_post(base + "/Verifications", _guarded(create))
    app.router.add_get(base + "/Verifications/{sid}", _guarded(fetch))
    app.router.add_post(base + "/Verifications/{sid}", _guarded(update))
    app.router.add_post(base + "/VerificationCheck", _guarded(check))
    app.router.add_get("/v2/Attempts", _account(attempts_list))
    app.router.add_get("/v2/Attempts/Summary", _account(attempts_summary))
    app.router.add_get("/v2/Attempts/{sid}", _account(attempt_fetch))
    app.router.add_get("/healthz", in_handler(healthz))
    return app


def log_requests(app: web.Application, log: Log, listener: str) -> None:
    """The access log: one JSON line per request (method, path without its query and with the
    call token replaced, status, milliseconds). Never a header, a body or a query string."""

    @web.middleware
    async def access(request: web.Request, handler):
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            log.write("access", listener=listener, method=request.method[:10], path=safe_path(request.path),
                      status=status, ms=round((time.perf_counter() - started) * 1000, 2))

    app.middlewares.insert(0, access)
