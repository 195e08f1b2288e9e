"""`voice2fa serve` under load, on a real redis-server it starts (loopback only).

    python bench/serve_api.py                 # both figures, 3 rounds of 5 s
    python bench/serve_api.py --rounds 1 --duration 3 --calls 200
    python bench/serve_api.py --rate 10000    # the 200 creates within a second: the burst

1. VerificationCheck requests per second against a bare aiohttp handler that does one Redis
   round trip (a GET) and answers 200, both in their own process, the rounds interleaved, the
   same client (32 connections, keep-alive). The checks go by `To` to one verification that
   answered max_attempts_reached after 5 wrong codes (60202, HTTP 429, from then on): each
   request is authenticated (one HMAC; the key record cached after its first read), and the
   pending pointer (which still leads to the locked session) and the session are read and
   checked by the store's CHECK_PENDING script in one round trip (each one's MAC checked
   here). Target:
   at least 0.4x the bare handler.
2. `--calls` verifications created at once (`voice2fa sandbox` in its own process stands in for
   the platform: each call answered, the gate's key pressed, the code read, the call completed),
   then the webhook's latency from the server's own access log (the handler's time
   for each of the platform's requests: p50, p99, max) and the server's peak RSS (VmHWM).
   Target: p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from tests.redis_server import RedisServer, free_port  # noqa: E402

BARE = """
import asyncio, sys
import redis.asyncio as aredis
from aiohttp import web
r = aredis.Redis.from_url(sys.argv[1])
async def handle(request):
    await request.post()
    await r.get("bench:bare")
    return web.json_response({"status": "pending"})
app = web.Application()
app.router.add_post("/check", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
"""


SANDBOX = """
import asyncio, json, sys
from voice2fa_cli.sandbox import SANDBOX_CALLER, Sandbox
from voice2fa_cli.sandbox.foreground import settings
stretch = float(sys.argv[1])
async def main():
    sb = Sandbox(caller=SANDBOX_CALLER, sleep=lambda s: asyncio.sleep(s * stretch))
    await sb.start()
    print(json.dumps(settings(sb)), flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def command() -> list[str]:
    exe = Path(sys.executable).with_name("voice2fa")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "voice2fa_cli"]


async def load(url: str, form: dict, headers: dict, duration: float, connections: int = 32) -> dict:
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=10)) as http:
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            for _ in range(10_000_000):
                if time.perf_counter() >= deadline:
                    return
                async with http.post(url, data=form) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.perf_counter() - start
    return {"rps": sum(statuses.values()) / seconds, "statuses": statuses}


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a server exited ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def cli(args: list[str], env: dict) -> dict:
    done = subprocess.run(command() + args, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"voice2fa {' '.join(args)}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def vmhwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="verifications created per second")
    parser.add_argument("--stretch", type=float, default=60.0, help="the sandbox's steps, this many times slower")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voice2fa-bench-serve-"))
    (tmp / "redis").mkdir()
    redis_server = RedisServer(tmp / "redis").start()  # on a unix socket: the figure is the server's, not TCP's
    procs: list[subprocess.Popen] = []
    try:
        key_file = tmp / "key"
        key_file.write_bytes(os.urandom(32))
        key_file.chmod(0o600)
        state = tmp / "state"
        state.mkdir(mode=0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
        env.update(VOICE2FA_STATE_DIR=str(state), VOICE2FA_STORE=redis_server.url, VOICE2FA_KEY_FILE=str(key_file),
                   VOICE2FA_MAX_CALLS_PER_HOUR="10000", VOICE2FA_POLL_INTERVAL="1", VOICE2FA_WEBHOOK_GRACE="5")
        service = cli(["services", "create", "bench"], env)
        key = cli(["keys", "create", "bench"], env)
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key['sid']}:{key['secret']}".encode()).decode()}
        api_port, bare_port, hook_port, metrics_port = free_port(), free_port(), free_port(), free_port()
        # The stand-in of the platform in a process of its own (`voice2fa sandbox`), as the real
        # platform would be: the server's figures are the server's alone.
        # Each simulated step stretched (--stretch): calls last seconds, as real ones do, so that
        # the verifications are in flight together.
        sandbox = subprocess.Popen([sys.executable, "-c", SANDBOX, str(args.stretch)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(sandbox)
        env.update(json.loads(sandbox.stdout.readline()))
        env.update(VOICE2FA_PUBLIC_URL=f"http://127.0.0.1:{hook_port}", VOICE2FA_LISTEN=f"127.0.0.1:{hook_port}")
        log_path = tmp / "serve.log"
        serve = subprocess.Popen(command() + ["serve", "--listen-api", f"127.0.0.1:{api_port}",
                                               "--listen-metrics", f"127.0.0.1:{metrics_port}"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
        procs.append(serve)
        bare = subprocess.Popen([sys.executable, "-c", BARE, redis_server.url, str(bare_port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(bare)
        wait_listening(api_port, serve)
        wait_listening(bare_port, bare)
        base = f"http://127.0.0.1:{api_port}/v2/Services/{service['sid']}"
        number = "+15551230000"

        async def prepare() -> None:
            async with aiohttp.ClientSession(headers=auth) as http:
                async with http.post(f"{base}/Verifications", data={"To": number, "Channel": "call"}) as r:
                    assert r.status == 201, await r.text()
                for _ in range(5):
                    async with http.post(f"{base}/VerificationCheck", data={"To": number, "Code": "0000000"}) as r:
                        assert r.status == 200, await r.text()

        asyncio.run(prepare())
        check_form = {"To": number, "Code": "0000000"}
        serve_rps, bare_rps, statuses = [], [], {}
        for _ in range(args.rounds):
            got = asyncio.run(load(f"{base}/VerificationCheck", check_form, auth, args.duration))
            serve_rps.append(got["rps"])
            statuses.update(got["statuses"])
            bare_rps.append(asyncio.run(load(f"http://127.0.0.1:{bare_port}/check", check_form, {}, args.duration))["rps"])
        s, b = statistics.median(serve_rps), statistics.median(bare_rps)
        print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, redis-server on 127.0.0.1")
        print()
        print("| figure | this | baseline | ratio | target | met |")
        print("|---|---|---|---|---|---|")
        print(f"| VerificationCheck req/s (statuses {statuses}) | {s:.0f} | bare handler + 1 Redis GET: {b:.0f} | "
              f"{s / b:.2f}× | ≥ 0.4× | {'yes' if s / b >= 0.4 else 'no'} |")

        async def burst() -> tuple[list[int], int]:
            """Creates at --rate; returns their statuses and the most calls in flight at once."""
            peak_flight = 0
            async with aiohttp.ClientSession(headers=auth, timeout=aiohttp.ClientTimeout(total=60)) as http:
                async def one(i: int) -> int:
                    await asyncio.sleep(i / args.rate)
                    form = {"To": f"+1555124{i:04d}", "Channel": "call"}
                    async with http.post(f"{base}/Verifications", data=form) as r:
                        await r.read()
                        return r.status

                async def watch() -> None:
                    nonlocal peak_flight
                    while True:
                        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                            text = await r.text()
                        placed = ended = 0.0
                        for line in text.splitlines():
                            if line.startswith("voice2fa_calls_placed_total "):
                                placed = float(line.split()[1])
                            if line.startswith("voice2fa_calls_ended_total "):
                                ended = float(line.split()[1])
                        peak_flight = max(peak_flight, int(placed - ended))
                        await asyncio.sleep(0.25)

                watcher = asyncio.ensure_future(watch())
                statuses = await asyncio.gather(*(one(i) for i in range(args.calls)))
                await asyncio.sleep(0.5)
                watcher.cancel()
            return statuses, peak_flight

        before = log_path.stat().st_size
        started = time.perf_counter()
        created, peak_flight = asyncio.run(burst())
        created_in = time.perf_counter() - started
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until every call has ended
            with open(log_path) as f:
                f.seek(before)
                ended_count = sum(1 for line in f if '"event":"ended"' in line)
            if ended_count >= created.count(201):
                break
            time.sleep(0.5)
        peak = vmhwm(serve.pid)
        with open(log_path) as f:
            f.seek(before)
            lines = [json.loads(line) for line in f if line.startswith("{")]
        hooks = sorted(line["ms"] for line in lines if line["kind"] == "access" and line["listener"] == "webhook")
        delivered = sum(1 for line in lines if line["kind"] == "call" and line.get("event") == "ended"
                        and line.get("delivered"))
        p = lambda q: hooks[min(len(hooks) - 1, int(q * len(hooks)))] if hooks else float("nan")  # noqa: E731
        print(f"| {args.calls} verifications created at {args.rate:g}/s ({created.count(201)} × 201 in "
              f"{created_in:.1f} s; at most {peak_flight} calls in flight at once; {delivered} codes delivered; "
              f"{len(hooks)} webhook requests): webhook p99 | {p(0.99):.1f} ms "
              f"(p50 {p(0.5):.1f}, max {hooks[-1] if hooks else float('nan'):.1f}) | — | — | < 50 ms | "
              f"{'yes' if p(0.99) < 50 else 'no'} |")
        print(f"| server peak RSS (VmHWM) after them | {peak / 1e6:.1f} MB | — | — | — | — |")
        return 0
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
