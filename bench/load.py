"""The fallback load generator (used by bench/run.py when wrk is not installed).

    python bench/load.py URL --body FORM --signature SIG [--connections 32] [--duration 5]

N concurrent workers, each POSTing the same signed form in a loop over one shared aiohttp
ClientSession (at most N connections, kept alive) until the duration is up. Prints one JSON
line: {"requests", "seconds", "rps", "statuses": {code: count}, "errors": {kind: count}}.
Slower than wrk: a Python client can be the bottleneck, which pulls the two req/s figures of
a ratio towards each other. Loopback URLs only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import aiohttp

MAX_REQUESTS_PER_WORKER = 10_000_000  # a count bound as well as the time bound


async def run(url: str, body: bytes, sig: str, connections: int, duration: float) -> dict:
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-SignalWire-Signature": sig}
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            for _ in range(MAX_REQUESTS_PER_WORKER):
                if time.perf_counter() >= deadline:
                    return
                try:
                    async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                        await resp.read()
                        statuses[resp.status] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors[type(exc).__name__] += 1

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(connections))), timeout=duration + 30)
        seconds = time.perf_counter() - start
    total = sum(statuses.values())
    return {
        "requests": total,
        "seconds": seconds,
        "rps": total / seconds if seconds else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--body", required=True)
    parser.add_argument("--signature", required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    if urlsplit(args.url).hostname != "127.0.0.1":
        sys.exit("load.py: loopback (127.0.0.1) URLs only")
    result = asyncio.run(run(args.url, args.body.encode(), args.signature, args.connections, args.duration))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
