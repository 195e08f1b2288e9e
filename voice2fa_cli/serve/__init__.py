"""`voice2fa serve`: a self-hosted voice verification API in the shape of Twilio Verify v2.

records.py  services, API keys and verifications, kept in the store (either backend)
shapes.py   the resource and error shapes of Twilio's Verify v2 API
api.py      the API app (`/v2/...`, `/healthz`, `/metrics`)
server.py   both listeners, the platform client, the calls in flight, shutting down
log.py      the JSON-lines access and event log on stderr
"""
