"""The platform: the Compatibility (cXML) REST client (client.py) and webhook signatures (signature.py)."""
