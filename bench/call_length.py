"""How long the default call speaks, in every translated language: `voice2fa preview --audio`
(espeak-ng, each <Say> in its language, each <Pause> as silence) measured with sox (`soxi -D`).

    python bench/call_length.py                 # caller name "Acme support", 6 and 10 digits
    python bench/call_length.py --neutral       # without a caller name
    python bench/call_length.py --digits 6 8 10

The default call: the opening, the key-press gate (answered at once), the code twice with its
options sentence, goodbye. Left out: ringing, and the key windows (the callee presses the gate
key at once; after the options the call waits up to speech.KEY_WINDOW seconds for a key
before goodbye). Target: under 45 s of speech for 6 digits, so that a call with one repeat
stays within a billed minute. Prints a Markdown table; each figure against the target as a
ratio. espeak-ng at 150 words a minute stands in for SignalWire's voices: the figures compare
languages and code lengths, they do not predict a platform voice to the second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = 45.0  # seconds of speech, 6 digits
LANGUAGES = ("en-US", "de-DE", "es-ES", "fr-FR", "it-IT")


def command() -> list[str]:
    exe = shutil.which("voice2fa")
    return [exe] if exe else [sys.executable, "-m", "voice2fa_cli"]


def seconds(language: str, digits: int, caller: str | None, tmp: Path) -> float:
    out = tmp / f"{language}-{digits}.wav"
    args = ["preview", "--language", language, "--digits", str(digits), "--audio", str(out)]
    if caller:
        args += ["--caller-name", caller]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    done = subprocess.run(command() + args, env=env, cwd=tmp, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"voice2fa preview failed ({done.returncode}): {done.stderr.strip()}")
    soxi = subprocess.run(["soxi", "-D", str(out)], capture_output=True, text=True, timeout=60, check=True)
    return float(soxi.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, nargs="+", default=[6, 10])
    parser.add_argument("--neutral", action="store_true", help="no caller name")
    args = parser.parse_args()
    for tool in ("espeak-ng", "soxi"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    caller = None if args.neutral else "Acme support"
    print(f"Default call (gate, code twice, goodbye), {'no caller name' if caller is None else 'caller name ' + repr(caller)}; "
          f"target < {TARGET:.0f} s of speech for 6 digits\n")
    print("| language | " + " | ".join(f"{d} digits" for d in args.digits) + " | 6 digits / target | met |")
    print("|---|" + "---|" * len(args.digits) + "---|---|")
    missed = 0
    with tempfile.TemporaryDirectory(prefix="voice2fa-bench-") as tmp:
        for language in LANGUAGES:
            figures = {d: seconds(language, d, caller, Path(tmp)) for d in args.digits}
            six = figures.get(6) or seconds(language, 6, caller, Path(tmp))
            met = six < TARGET
            missed += not met
            cells = " | ".join(f"{figures[d]:.1f} s" for d in args.digits)
            print(f"| {language} | {cells} | {six / TARGET:.2f} | {'yes' if met else '**no**'} |")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
