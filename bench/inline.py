"""The inline delivery against the webhook delivery, the whole sandbox round trip in the same run:
`voice2fa send --sandbox NUMBER --no-prompt --delivery inline|webhook`, the two interleaved,
each its own process; wall time and peak RSS (the child's ru_maxrss) as medians, and their
ratios (inline / webhook; target: no slower). Then the dial request's size per language (the
Calling API documents no limit: it must be nowhere near one a JSON API would set).

    python bench/inline.py             # 7 rounds
    python bench/inline.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NUMBER = "+15551234567"


def command() -> list[str]:
    exe = Path(sys.executable).with_name("voice2fa")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "voice2fa_cli"]


def once(delivery: str, env: dict) -> tuple[float, int]:
    """One send: its wall time (s) and peak RSS (bytes)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command() + ["send", "--sandbox", NUMBER, "--no-prompt", "--delivery", delivery],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"send --delivery {delivery} failed: {err}")
    return seconds, usage.ru_maxrss * 1024


def dial_sizes() -> list[tuple[str, int]]:
    from voice2fa_cli.voice import phrases, speech, swml

    out = []
    for language in phrases.CALL_LANGUAGES:
        voice = speech.Voice(language=language, caller="Acme Customer Support Desk")
        document = swml.document("1234567890", voice, "7")
        body = {"command": "dial", "params": {"from": "+15550100000", "to": NUMBER, "timeout": 30, "swml": document}}
        out.append((language, len(json.dumps(body, separators=(",", ":")).encode())))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voice2fa-bench-inline-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env.update(VOICE2FA_STATE_DIR=str(tmp), NO_COLOR="1")
    results: dict[str, list[tuple[float, int]]] = {"webhook": [], "inline": []}
    once("webhook", env)  # warm the file cache for both
    for _ in range(args.rounds):
        for delivery in ("webhook", "inline"):
            results[delivery].append(once(delivery, env))
    wall = {d: statistics.median(s for s, _ in r) for d, r in results.items()}
    rss = {d: statistics.median(m for _, m in r) for d, r in results.items()}
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; {args.rounds} rounds, interleaved")
    print()
    print("| figure | inline | webhook (baseline) | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    ratio = wall["inline"] / wall["webhook"]
    print(f"| `send --sandbox --no-prompt` wall time (median) | {wall['inline']:.2f} s | {wall['webhook']:.2f} s | "
          f"{ratio:.2f}× | ≤ 1× | {'yes' if ratio <= 1 else 'no'} |")
    ratio = rss["inline"] / rss["webhook"]
    print(f"| peak RSS of the send process (median) | {rss['inline'] / 1e6:.1f} MB | {rss['webhook'] / 1e6:.1f} MB | "
          f"{ratio:.2f}× | ≤ 1× | {'yes' if ratio <= 1 else 'no'} |")
    print()
    print("| language | dial request, 10-digit code, gate, caller name |")
    print("|---|---|")
    for language, size in dial_sizes():
        print(f"| {language} | {size / 1000:.1f} kB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
