"""What the call says, in the callee's language: the phrases, translated, and the language
chosen from the callee's country when the operator does not name one."""

from __future__ import annotations

DEFAULT_LANGUAGE = "en-US"

# Each country maps to a language value that SignalWire's <Say> accepts for its standard voices.
_BY_REGION = {
    "US": "en-US", "CA": "en-CA", "GB": "en-GB", "IE": "en-GB", "AU": "en-AU", "NZ": "en-AU",
    "IN": "en-IN", "ES": "es-ES", "MX": "es-MX", "AR": "es-MX", "CL": "es-MX", "CO": "es-MX",
    "PE": "es-MX", "VE": "es-MX", "EC": "es-MX", "UY": "es-MX", "PY": "es-MX", "BO": "es-MX",
    "CR": "es-MX", "PA": "es-MX", "GT": "es-MX", "HN": "es-MX", "SV": "es-MX", "NI": "es-MX",
    "DO": "es-MX", "CU": "es-MX", "PR": "en-US", "FR": "fr-FR", "BE": "fr-FR", "LU": "fr-FR",
    "MC": "fr-FR", "CH": "de-DE", "DE": "de-DE", "AT": "de-DE", "LI": "de-DE", "IT": "it-IT",
    "SM": "it-IT", "VA": "it-IT", "PT": "pt-PT", "BR": "pt-BR", "AO": "pt-PT", "MZ": "pt-PT",
    "NL": "nl-NL", "DK": "da-DK", "FI": "fi-FI", "NO": "nb-NO", "SE": "sv-SE", "PL": "pl-PL",
    "RU": "ru-RU", "JP": "ja-JP", "KR": "ko-KR", "CN": "zh-CN", "HK": "zh-HK", "TW": "zh-TW",
    "SN": "fr-FR", "CI": "fr-FR", "MA": "fr-FR", "TN": "fr-FR", "DZ": "fr-FR",
}

_TEXT = {
    "en": {
        "intro": "Hello. This is your verification code.",
        "code": "Your code is:",
        "again": "Once again, your code is:",
        "goodbye": "Goodbye.",
        "press": "Press {key} to hear your code.",
        "wrong_key": "That was not {key}.",
        "no_key": "We did not hear a key press. Goodbye.",
    },
    "es": {
        "intro": "Hola. Este es su código de verificación.",
        "code": "Su código es:",
        "again": "Una vez más, su código es:",
        "goodbye": "Adiós.",
        "press": "Pulse {key} para escuchar su código.",
        "wrong_key": "Esa tecla no era el {key}.",
        "no_key": "No hemos recibido ninguna tecla. Adiós.",
    },
    "fr": {
        "intro": "Bonjour. Voici votre code de vérification.",
        "code": "Votre code est :",
        "again": "Je répète, votre code est :",
        "goodbye": "Au revoir.",
        "press": "Appuyez sur {key} pour entendre votre code.",
        "wrong_key": "Ce n'était pas le {key}.",
        "no_key": "Nous n'avons reçu aucune touche. Au revoir.",
    },
    "de": {
        "intro": "Hallo. Hier ist Ihr Bestätigungscode.",
        "code": "Ihr Code lautet:",
        "again": "Noch einmal, Ihr Code lautet:",
        "goodbye": "Auf Wiederhören.",
        "press": "Drücken Sie die {key}, um Ihren Code zu hören.",
        "wrong_key": "Das war nicht die {key}.",
        "no_key": "Wir haben keinen Tastendruck erhalten. Auf Wiederhören.",
    },
    "it": {
        "intro": "Buongiorno. Ecco il suo codice di verifica.",
        "code": "Il suo codice è:",
        "again": "Ripeto, il suo codice è:",
        "goodbye": "Arrivederci.",
        "press": "Prema {key} per ascoltare il suo codice.",
        "wrong_key": "Non era il {key}.",
        "no_key": "Non abbiamo ricevuto alcun tasto. Arrivederci.",
    },
    "pt": {
        "intro": "Olá. Este é o seu código de verificação.",
        "code": "O seu código é:",
        "again": "Mais uma vez, o seu código é:",
        "goodbye": "Adeus.",
        "press": "Pressione {key} para ouvir o seu código.",
        "wrong_key": "Essa tecla não era o {key}.",
        "no_key": "Não recebemos nenhuma tecla. Adeus.",
    },
}

TRANSLATED = frozenset(_TEXT)


def for_region(region: str | None) -> str:
    """The language a callee in `region` most likely understands; en-US when unknown."""
    return _BY_REGION.get((region or "").upper(), DEFAULT_LANGUAGE)


def text_language(language: str) -> str:
    """The language of the spoken sentences: `language` when translated, else en-US (the
    digits are still spoken in `language`)."""
    return language if language.split("-")[0].lower() in TRANSLATED else DEFAULT_LANGUAGE


def phrase(language: str, name: str, **values: str) -> str:
    table = _TEXT.get(language.split("-")[0].lower(), _TEXT["en"])
    return table[name].format(**values)
