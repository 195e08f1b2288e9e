"""voice2fa: prove by a phone call that a person holds a phone number."""

# Kept here as a literal: reading it through importlib.metadata costs start-up time.
__version__ = "0.1.0"
