"""What a callee heard, read back: the codes in a call's transcript (the sandbox's simulated
callee, a spoken preview). Shared by the CLI's output and serve's sandbox log."""

from __future__ import annotations

import re

_SEPARATORS = " ,.;:·…\\-–—"  # between the digits of a code as it is written out
_RUN = re.compile(rf"(?<![\w])\d(?:[{_SEPARATORS}]{{0,3}}\d)*(?![\w])")
_ONLY_DIGITS = re.compile(rf"[\d{_SEPARATORS}]*\d[\d{_SEPARATORS}]*")


def readings(lines: list[str], shortest: int = 6) -> list[str]:
    """The codes the callee heard, one entry per reading, whatever the rendering: digits
    with commas or spaces on one line, one digit per line, or inside a sentence."""
    found: list[str] = []
    current = ""
    for line in lines:
        text = line.strip()
        if _ONLY_DIGITS.fullmatch(text):
            current += "".join(c for c in text if c.isdigit())
            continue
        if current:
            found.append(current)
            current = ""
        for run in _RUN.findall(text):
            digits = "".join(c for c in run if c.isdigit())
            if len(digits) >= shortest:
                found.append(digits)
    if current:
        found.append(current)
    out: list[str] = []
    for digits in found:
        if len(digits) < shortest:
            continue
        for size in range(shortest, len(digits) // 2 + 1):  # readings run together
            if len(digits) % size == 0 and digits == digits[:size] * (len(digits) // size):
                out += [digits[:size]] * (len(digits) // size)
                break
        else:
            out.append(digits)
    return out
