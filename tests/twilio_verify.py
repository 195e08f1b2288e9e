"""Facts about Twilio Verify v2 that `voice2fa serve` relies on, each with its source.

- SPEC = twilio/twilio-oai, spec/json/twilio_verify_v2.json (fetched 2026-11; servers:
  https://verify.twilio.com), components.schemas and paths.
- SDK  = the official `twilio` package 9.x, twilio/base/version.py (how errors are read).
- ERRORS = https://www.twilio.com/docs/errors/{code} (Twilio's error dictionary; the codes).
"""

# SPEC components.schemas["verify.v2.service.verification"].properties, in order
VERIFICATION_FIELDS = ("sid", "service_sid", "account_sid", "to", "channel", "status", "valid", "lookup", "amount",
                       "payee", "send_code_attempts", "date_created", "date_updated", "sna", "url")
# SPEC components.schemas["verify.v2.service.verification_check"].properties, in order
CHECK_FIELDS = ("sid", "service_sid", "account_sid", "to", "channel", "status", "valid", "amount", "payee",
                "date_created", "date_updated", "sna_attempts_error_codes")
# SPEC ...verification.properties.sid.pattern (and service_sid ^VA, account_sid ^AC)
SID_PATTERNS = {"sid": r"VE[0-9a-fA-F]{32}", "service_sid": r"VA[0-9a-fA-F]{32}", "account_sid": r"AC[0-9a-fA-F]{32}"}
# SPEC paths: create answers 201; the check 200 (or 201); fetch and update 200
CREATE_STATUS, CHECK_STATUS = 201, 200
# SPEC paths["/v2/Services/{ServiceSid}/Verifications"].post example: send_code_attempts items
ATTEMPT_FIELDS = ("time", "channel", "attempt_sid")
# SPEC example dates: "2015-07-30T20:00:00Z"
DATE_PATTERN = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
# SDK: a legacy error body {code, message, more_info, status} becomes TwilioRestException(status, uri,
# "Unable to ... : {message}", code, ...)
ERROR_FIELDS = ("code", "message", "more_info", "status")
# ERRORS: the codes and their HTTP statuses
INVALID_PARAMETER = (60200, 400)
NOT_FOUND = (20404, 404)
MAX_CHECK_ATTEMPTS = (60202, 429)
MAX_SEND_ATTEMPTS = (60203, 429)
AUTHENTICATE = (20003, 401)
# ERRORS 20004: "Method not allowed", HTTP 405
METHOD_NOT_ALLOWED = (20004, 405)
# SPEC paths["/v2/Services/{ServiceSid}/VerificationCheck"].post requestBody: Code is a string,
# "The 4-10 character string being verified"; VerificationSid has the pattern ^VE[0-9a-fA-F]{32}$
CHECK_CODE_LENGTHS = (4, 10)
# SPEC paths["/v2/Services/{ServiceSid}/Verifications/{Sid}"].post requestBody: Status, the
# verification's update_status enum
UPDATE_STATUSES = ("canceled", "approved")
# ERRORS 60605: "Verification delivery attempt blocked" (Verify Geo-Permissions), HTTP 403
DELIVERY_BLOCKED = (60605, 403)
