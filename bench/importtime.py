"""Where a voice2fa command spends its start-up: `-X importtime`, several runs, medians.

    python bench/importtime.py                      # verify with no session (the default)
    python bench/importtime.py --version            # voice2fa --version
    python bench/importtime.py -- send --sandbox +15551234567 --no-prompt
    python bench/importtime.py --runs 9 --top 25

Runs the console script's module (voice2fa_cli.cli:main) under `python -X importtime`, and
`python -X importtime -c "import click"` as the baseline, each --runs times in a private
state dir, cwd and byte-code cache. Prints the modules the command imports that the baseline
does not, heaviest first by median self time, and the heaviest top-level import trees
(cumulative) of the command. Times in milliseconds; single-run figures are noisy, medians less.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def sample(argv: list[str], env: dict[str, str], cwd: str) -> list[tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, depth) for one run."""
    proc = subprocess.run(argv, check=False, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    rows = []
    for line in proc.stderr.splitlines():
        m = LINE.match(line)
        if m:
            rows.append((m.group(4), int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2))
    return rows


def collect(argv: list[str], runs: int, env: dict[str, str], cwd: str):
    selfs: dict[str, list[int]] = defaultdict(list)
    cums: dict[str, list[int]] = defaultdict(list)
    depth: dict[str, int] = {}
    for i in range(runs + 1):
        rows = sample(argv, env, cwd)
        if i == 0:
            continue  # warm-up: writes byte code
        for name, s, c, d in rows:
            selfs[name].append(s)
            cums[name].append(c)
            depth.setdefault(name, d)
    return ({k: statistics.median(v) / 1000 for k, v in selfs.items()},
            {k: statistics.median(v) / 1000 for k, v in cums.items()}, depth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--version", action="store_true", help="profile `voice2fa --version`")
    parser.add_argument("args", nargs="*", help="voice2fa arguments (after --)")
    opts = parser.parse_args()
    args = ["--version"] if opts.version else (opts.args or ["verify", "+15551234567", "--code", "000000"])

    with tempfile.TemporaryDirectory(prefix="v2fa-importtime-") as root:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SIGNALWIRE_", "VOICE2FA_")) and k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = os.path.join(root, "pycache")
        env["VOICE2FA_STATE_DIR"] = os.path.join(root, "state")
        os.mkdir(env["VOICE2FA_STATE_DIR"])
        entry = "import sys; from voice2fa_cli.cli import main; sys.argv[0] = 'voice2fa'; sys.exit(main())"
        cmd = [sys.executable, "-X", "importtime", "-c", entry, *args]
        base = [sys.executable, "-X", "importtime", "-c", "import click"]
        b_self, b_cum, _ = collect(base, opts.runs, env, root)
        c_self, c_cum, depth = collect(cmd, opts.runs, env, root)

    extra = {k: v for k, v in c_self.items() if k not in b_self}
    print(f"`voice2fa {' '.join(args)}`: {len(c_self)} modules imported, {len(extra)} more than "
          f"`python -c \"import click\"`; median of {opts.runs} runs\n")
    print(f"extra modules, total self time {sum(extra.values()):.1f} ms; heaviest by self time:\n")
    print("| module | self ms | cumulative ms |\n|---|---|---|")
    for name, s in sorted(extra.items(), key=lambda kv: -kv[1])[: opts.top]:
        print(f"| {name} | {s:.1f} | {c_cum[name]:.1f} |")
    print("\ntop-level imports of the command (depth 0), by cumulative time:\n")
    print("| module | cumulative ms | in baseline? |\n|---|---|---|")
    tops = [(k, v) for k, v in c_cum.items() if depth.get(k) == 0]
    for name, c in sorted(tops, key=lambda kv: -kv[1])[: opts.top]:
        print(f"| {name} | {c:.1f} | {'yes' if name in b_cum else 'no'} |")


if __name__ == "__main__":
    main()
