"""Code checks per second on the shared Redis store: one process, then 8 contending, each
against a baseline in the same run on the same server (the same number of round trips of a
trivial Lua script); and `voice2fa verify` start-up with VOICE2FA_STORE=redis://… against
`python -c "import click"` and against the SQLite default.

    python bench/redis_checks.py [--checks N] [--procs 8] [--rounds 3]

Run by hand; it starts its own redis-server (Debian's package) on a loopback port and prints a
Markdown table. A check is two round trips: which session is the newest (its id goes into the
code's HMAC), then the script that checks and updates atomically.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from store_checks import timed  # noqa: E402 (this folder: one way to time a command)
from tests.redis_server import RedisServer, free_port  # noqa: E402
from voice2fa_cli.stores.redis import RedisStore  # noqa: E402

CODE = "482915"
WRONG = "111111"
TRIVIAL = "return 1"


def number(worker: int, i: int) -> str:
    return f"+1555{worker:02d}{i:05d}"


def seed(url: str, key: bytes, workers: int, per_worker: int) -> None:
    with RedisStore.open(url, key) as store:
        for w in range(workers):
            for i in range(per_worker):
                store.create_session(session_id=f"s{w}-{i}", number=number(w, i), code=CODE, ttl=600,
                                     call_sid=None, call_status=None)


def check_worker(url: str, key: bytes, worker: int, per_worker: int, code: str, start, out) -> None:
    store = RedisStore.open(url, key)
    start.wait()
    t0 = time.perf_counter()
    ok = sum(store.check(number(worker, i), code).verified for i in range(per_worker))
    out.put((time.perf_counter() - t0, ok))
    store.close()


def bare_worker(url: str, key: bytes, worker: int, per_worker: int, code: str, start, out) -> None:
    r = redis.Redis.from_url(url)
    script = r.register_script(TRIVIAL)
    script(keys=["warm"], args=[])
    start.wait()
    t0 = time.perf_counter()
    for i in range(per_worker):
        r.hget(f"bare:{{{number(worker, i)}}}", "newest")
        script(keys=[f"bare:{{{number(worker, i)}}}"], args=[code])
    out.put((time.perf_counter() - t0, per_worker))
    r.close()


def run_round(url: str, kind: str, procs: int, per_worker: int, code: str) -> float:
    redis.Redis.from_url(url).flushall()
    key = secrets.token_bytes(32)
    if kind == "store":
        seed(url, key, procs, per_worker)
    fn = check_worker if kind == "store" else bare_worker
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=fn, args=(url, key, w, per_worker, code, start, out)) for w in range(procs)]
    for p in workers:
        p.start()
    time.sleep(0.3)  # let every worker connect
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=300) for _ in workers]
    wall = time.perf_counter() - t0
    for p in workers:
        p.join(30)
    if kind == "store" and code == CODE:
        assert sum(ok for _, ok in results) == procs * per_worker, "every right code must verify"
    return procs * per_worker / wall


def verify_startup(url: str, rounds: int) -> dict[str, float]:
    """Median wall time of `verify` (no session: the store answers) on Redis and on SQLite,
    and of `python -c "import click"`, interleaved."""
    exe = shutil.which("voice2fa") or sys.exit("voice2fa is not on PATH: pip install -e .")
    tmp = Path(tempfile.mkdtemp(prefix="v2fa-bench-"))
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
        base.pop("PYTHONDONTWRITEBYTECODE", None)
        key_file = tmp / "key"
        key_file.write_bytes(secrets.token_bytes(32))
        key_file.chmod(0o600)
        sqlite_env = dict(base, VOICE2FA_STATE_DIR=str(tmp / "sqlite"))
        redis_env = dict(base, VOICE2FA_STATE_DIR=str(tmp / "redis"), VOICE2FA_STORE=url,
                         VOICE2FA_KEY_FILE=str(key_file))
        cmd = [exe, "verify", "+15551234567", "--code", CODE]
        times: dict[str, list[float]] = {"click": [], "sqlite": [], "redis": []}
        for i in range(rounds + 2):
            click_t = timed([sys.executable, "-c", "import click"], base)
            sqlite_t = timed(cmd, sqlite_env)
            redis_t = timed(cmd, redis_env)
            if i >= 2:  # warm-up
                times["click"].append(click_t)
                times["sqlite"].append(sqlite_t)
                times["redis"].append(redis_t)
        return {k: statistics.median(v) for k, v in times.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checks", type=int, default=2000, help="checks per worker per round")
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="v2fa-redis-"))
    port = free_port()
    server = RedisServer(tmp, port=port).start()
    url = f"redis://127.0.0.1:{port}/0"
    rows = []
    try:
        for label, procs in (("1 process", 1), (f"{args.procs} contending processes", args.procs)):
            per = args.checks if procs == 1 else max(1, args.checks // procs)
            for code, what in ((CODE, "right code"), (WRONG, "wrong code")):
                ours, bare = [], []
                for _ in range(args.rounds):
                    ours.append(run_round(url, "store", procs, per, code))
                    bare.append(run_round(url, "bare", procs, per, code))
                o, b = statistics.median(ours), statistics.median(bare)
                rows.append((f"checks/s, {label}, {what}", f"{o:,.0f}", f"{b:,.0f}", f"{o / b:.2f}×"))
        t = verify_startup(url, 15)
        rows.append(("`verify` start to exit, VOICE2FA_STORE=redis://…", f"{t['redis'] * 1000:.0f} ms",
                     f"{t['click'] * 1000:.0f} ms (`python -c 'import click'`)", f"{t['redis'] / t['click']:.2f}×"))
        rows.append(("`verify` start to exit, SQLite (no VOICE2FA_STORE)", f"{t['sqlite'] * 1000:.0f} ms",
                     f"{t['click'] * 1000:.0f} ms (`python -c 'import click'`)", f"{t['sqlite'] / t['click']:.2f}×"))
        version = redis.Redis.from_url(url).info("server")["redis_version"]
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, redis-server {version} on 127.0.0.1, "
          f"redis-py {redis.__version__}")
    print("| figure | voice2fa | baseline (2 round trips of a trivial script, same server) | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
