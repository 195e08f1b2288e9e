"""Code checks per second: one process, then 8 processes contending for one database, each
against a baseline run the same way (a bare SQLite BEGIN IMMEDIATE / SELECT / UPDATE / COMMIT
on the same kind of database); and `voice2fa verify` start to exit with a real session.

    python bench/store_checks.py [--checks N] [--procs 8]

Run by hand; it prints a Markdown table. Everything happens in temporary directories.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice2fa_cli.stores.sqlite import Store  # noqa: E402

CODE = "482915"
WRONG = "111111"


def number(worker: int, i: int) -> str:
    return f"+1555{worker:02d}{i:05d}"


def seed(state_dir: Path, workers: int, per_worker: int) -> None:
    with Store.open(state_dir) as store:
        for w in range(workers):
            for i in range(per_worker):
                store.create_session(session_id=f"s{w}-{i}", number=number(w, i), code=CODE, ttl=600,
                                     call_sid=None, call_status=None)


def seed_bare(db: Path, workers: int, per_worker: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE s (number TEXT PRIMARY KEY, digest BLOB, state TEXT, attempts INTEGER)")
    conn.execute("BEGIN")
    for w in range(workers):
        for i in range(per_worker):
            conn.execute("INSERT INTO s VALUES (?, ?, 'open', 0)", (number(w, i), b"x" * 32))
    conn.execute("COMMIT")
    conn.close()


def check_worker(state_dir: str, worker: int, per_worker: int, code: str, start, out) -> None:
    store = Store.open(Path(state_dir), create=False)
    start.wait()
    t0 = time.perf_counter()
    ok = sum(store.check(number(worker, i), code).verified for i in range(per_worker))
    out.put((time.perf_counter() - t0, ok))
    store.close()


def bare_worker(db: str, worker: int, per_worker: int, code: str, start, out) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = NORMAL")
    start.wait()
    t0 = time.perf_counter()
    for i in range(per_worker):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SELECT digest, state, attempts FROM s WHERE number = ?", (number(worker, i),)).fetchone()
        conn.execute("UPDATE s SET state = 'verified' WHERE number = ?", (number(worker, i),))
        conn.execute("COMMIT")
    out.put((time.perf_counter() - t0, per_worker))
    conn.close()


def run_round(kind: str, procs: int, per_worker: int, code: str) -> float:
    """Checks per second over all workers (wall time from the common start to the last end)."""
    tmp = Path(tempfile.mkdtemp(prefix="v2fa-bench-"))
    try:
        if kind == "store":
            seed(tmp / "state", procs, per_worker)
            target, fn = str(tmp / "state"), check_worker
        else:
            seed_bare(tmp / "bare.sqlite3", procs, per_worker)
            target, fn = str(tmp / "bare.sqlite3"), bare_worker
        ctx = mp.get_context("fork")
        start, out = ctx.Event(), ctx.Queue()
        workers = [ctx.Process(target=fn, args=(target, w, per_worker, code, start, out)) for w in range(procs)]
        for p in workers:
            p.start()
        time.sleep(0.2)  # let every worker open its connection
        t0 = time.perf_counter()
        start.set()
        results = [out.get(timeout=300) for _ in workers]
        wall = time.perf_counter() - t0
        for p in workers:
            p.join(30)
        total = sum(n for _, n in results) if kind == "bare" else procs * per_worker
        if kind == "store" and code == CODE:
            assert sum(ok for _, ok in results) == total, "every right code must verify"
        return total / wall
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return time.perf_counter() - t0


def verify_wall(rounds: int) -> tuple[float, float]:
    exe = shutil.which("voice2fa") or sys.exit("voice2fa is not on PATH: pip install -e .")
    tmp = Path(tempfile.mkdtemp(prefix="v2fa-bench-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
        env["VOICE2FA_STATE_DIR"] = str(tmp / "state")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        seed(tmp / "state", 1, rounds + 2)
        base, subject = [], []
        for i in range(rounds + 2):
            b = timed([sys.executable, "-c", "import click"], env)
            s = timed([exe, "verify", number(0, i), "--code", CODE], env)
            if i >= 2:  # warm-up
                base.append(b)
                subject.append(s)
        return statistics.median(subject), statistics.median(base)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checks", type=int, default=2000, help="checks per worker per round")
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for label, procs in (("1 process", 1), (f"{args.procs} contending processes", args.procs)):
        per = args.checks if procs == 1 else max(1, args.checks // procs)
        for code, what in ((CODE, "right code"), (WRONG, "wrong code")):
            ours, bare = [], []
            for _ in range(args.rounds):
                ours.append(run_round("store", procs, per, code))
                bare.append(run_round("bare", procs, per, code))
            o, b = statistics.median(ours), statistics.median(bare)
            rows.append((f"checks/s, {label}, {what}", f"{o:,.0f}", f"{b:,.0f}", f"{o / b:.2f}×"))
    s, b = verify_wall(15)
    rows.append(("`voice2fa verify` with a session, wall time", f"{s * 1000:.0f} ms",
                 f"{b * 1000:.0f} ms (`python -c 'import click'`)", f"{s / b:.2f}×"))
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    print("| figure | voice2fa | baseline (bare SQLite transaction) | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
