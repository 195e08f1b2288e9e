"""Generic HTTP for the package's apps: a hardened server (server.py) and bounded forms (forms.py)."""
