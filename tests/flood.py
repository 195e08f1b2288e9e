"""An attacker that tries to starve a webhook server, for tests/test_webhook.py (run as its own
process, so its sockets count against its own open-file limit, not the test's).

    python tests/flood.py PORT COUNT MODE SECONDS

Opens COUNT connections to 127.0.0.1:PORT (only loopback) and holds them: MODE "idle" sends
nothing, "slow" sends a request line and then one header byte every 0.5 s and never ends the
headers. Prints one JSON line once every connection was attempted ({"opened", "failed"}), then
holds them for at most SECONDS (or until stdin closes), and prints how many the server closed.
Bounded in count (COUNT <= 2000) and time (SECONDS <= 60).
"""

from __future__ import annotations

import asyncio
import json
import sys

HOST = "127.0.0.1"


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mode: str, until: float) -> bool:
    """True when the server closed the connection before `until`."""
    loop = asyncio.get_running_loop()
    try:
        if mode == "slow":
            writer.write(b"POST /v/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        while loop.time() < until:
            if mode == "slow":
                writer.write(b"a")
                await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(1024), min(0.5, max(until - loop.time(), 0.01)))
            except asyncio.TimeoutError:
                continue
            if not data:
                return True
        return False
    except (ConnectionError, OSError):
        return True
    finally:
        writer.close()


async def main(port: int, count: int, mode: str, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds

    async def connect():
        try:
            return await asyncio.wait_for(asyncio.open_connection(HOST, port), 3)
        except (OSError, asyncio.TimeoutError):
            return None

    opened = []
    for start in range(0, count, 100):  # in batches, so that the listen backlog is not the test
        opened += [c for c in await asyncio.gather(*(connect() for _ in range(min(100, count - start)))) if c]
    print(json.dumps({"opened": len(opened), "failed": count - len(opened)}), flush=True)
    stdin_closed = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: stdin_closed.done() or stdin_closed.set_result(None))
    holders = asyncio.gather(*(hold(r, w, mode, until) for r, w in opened))
    await asyncio.wait([holders, stdin_closed], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    if not holders.done():
        holders.cancel()
        closed = None
    else:
        closed = sum(holders.result())
    print(json.dumps({"closed_by_server": closed}), flush=True)


if __name__ == "__main__":
    port, count, mode, seconds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    assert 0 < count <= 2000 and mode in ("idle", "slow") and 0 < seconds <= 60
    asyncio.run(main(port, count, mode, seconds))
