"""How the platform signs a form webhook, written again here (the sandbox shares no code with
voice2fa's `signature` module: a mistake made in both would pass unseen).

SignalWire, webhook-security (`signalwire/docs` fern/products/compatibility-api/pages/cxml/
guides/webhooks/webhook-security.mdx): header `X-SignalWire-Signature`, the value
base64(HMAC-SHA1(key, url + name1 + value1 + name2 + value2 …)), fields sorted by name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

HEADER = "X-SignalWire-Signature"


def sign(key: str, url: str, form: list[tuple[str, str]]) -> str:
    payload = url + "".join(name + value for name, value in sorted(form))
    digest = hmac.new(key.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
