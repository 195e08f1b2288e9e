"""The voice channel: what a call says (speech, phrases), its options, its state, the webhook
that answers the platform, and previews."""
