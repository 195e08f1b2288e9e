"""Twilio Verify's `Locale` values and the language a call in each would speak.

Twilio's tags, from https://www.twilio.com/docs/verify/supported-languages (the locale values its
Verify templates take, language tags after BCP 47: `en`, `en-GB`, `pt-BR`, `zh-HK`, …). Each maps
to the language voice2fa's calls name a voice by (the BCP 47 tag of SignalWire's voices). A tag
voice2fa's calls cannot speak yet answers as Twilio documents for an unsupported locale: HTTP 404,
so that the application retries without `Locale` (the call then speaks the number's country's
language, or English).

voice2fa's own region tags (`en-US`, `fr-FR`, …: phrases.CALL_LANGUAGES) are accepted as they are.
"""

from __future__ import annotations

TWILIO_LOCALES = {
    "af": "af-ZA", "ar": "ar-AE", "ca": "ca-ES", "zh": "cmn-CN", "zh-CN": "cmn-CN", "zh-HK": "yue-HK",
    "hr": "hr-HR", "cs": "cs-CZ", "da": "da-DK", "nl": "nl-NL", "en": "en-US", "en-GB": "en-GB", "et": "et-EE",
    "fi": "fi-FI", "fr": "fr-FR", "de": "de-DE", "el": "el-GR", "he": "he-IL", "hi": "hi-IN", "hu": "hu-HU",
    "id": "id-ID", "it": "it-IT", "ja": "ja-JP", "kn": "kn-IN", "ko": "ko-KR", "lt": "lt-LT", "ms": "ms-MY",
    "mr": "mr-IN", "nb": "nb-NO", "pl": "pl-PL", "pt-BR": "pt-BR", "pt": "pt-PT", "ro": "ro-RO", "ru": "ru-RU",
    "sk": "sk-SK", "es": "es-ES", "sv": "sv-SE", "tl": "fil-PH", "te": "te-IN", "th": "th-TH", "tr": "tr-TR",
    "uk": "uk-UA", "vi": "vi-VN",
}
_FOLDED = {tag.lower(): language for tag, language in TWILIO_LOCALES.items()}


def language(locale: str) -> str:
    """The language a call for `locale` speaks: a Twilio tag's (any case; `pt_BR` as `pt-BR`), or
    the locale itself (a region tag of voice2fa's, checked by the call's options)."""
    return _FOLDED.get(locale.replace("_", "-").lower(), locale)
