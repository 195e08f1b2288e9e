"""A local stand-in for SignalWire's Compatibility API (see server.py), usable in-process
(`send --sandbox`, the tests) or as a foreground server (`voice2fa sandbox`, foreground.py).

It shares no code with what it tests: it imports nothing from signature, webhook, signalwire
or speech (tests/test_sandbox_spec.py checks)."""

from voice2fa_cli.sandbox.server import (
    MAX_DELAY,
    OUTCOMES,
    SANDBOX_CALLER,
    Delivery,
    Recorded,
    Sandbox,
    Scenario,
    SimCall,
)

__all__ = ["MAX_DELAY", "OUTCOMES", "SANDBOX_CALLER", "Delivery", "Recorded", "Sandbox", "Scenario", "SimCall"]
