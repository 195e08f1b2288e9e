"""What the call says, in the callee's language: the phrases, translated, and the language of
the call chosen from the operator's flags, the voice and the callee's country.

Which languages SignalWire's <Say> speaks, from its documentation (signalwire/docs):
  fern/products/compatibility-api/pages/cxml/voice/say.mdx  (the `voice` attribute: man, woman,
  alice, `Polly.` and `gcloud.` voices; the languages its standard voices speak are the ones
  the page lists for the SSML <lang> tag: en-US, en-GB, en-IN, en-AU, en-CA, de-DE, es-ES,
  it-IT, ja-JP, fr-FR), and fern/products/platform/pages/calling/voice/TTS/polly.mdx and
  .../TTS/google.mdx for named voices (a Polly voice speaks one language, listed by AWS at
  https://docs.aws.amazon.com/polly/latest/dg/available-voices.html; a Google voice name starts
  with its language, e.g. gcloud.de-DE-Standard-A).

A call is wholly in one language: its sentences and its digits. A language without translated
phrases here is never used: a country without a translation gets a whole-English call, and the
operator is told so before dialing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

DEFAULT_LANGUAGE = "en-US"
MAX_CALLER_NAME = 40

# The standard voices (man, woman, alice, or no voice attribute): say.mdx, see above.
STANDARD_VOICES = frozenset({"man", "woman", "alice"})
STANDARD_LANGUAGES = ("en-US", "en-GB", "en-IN", "en-AU", "en-CA", "de-DE", "es-ES", "it-IT", "ja-JP", "fr-FR")

# Amazon Polly voices and the one language each speaks (AWS's list of available voices).
POLLY_LANGUAGES = {
    **dict.fromkeys(("joanna", "matthew", "ivy", "justin", "kendra", "kimberly", "salli", "joey", "kevin",
                     "ruth", "stephen", "danielle", "gregory", "patrick"), "en-US"),
    **dict.fromkeys(("amy", "emma", "brian", "arthur"), "en-GB"),
    **dict.fromkeys(("nicole", "russell", "olivia"), "en-AU"),
    **dict.fromkeys(("raveena", "kajal"), "en-IN"),
    **dict.fromkeys(("marlene", "vicki", "hans", "daniel"), "de-DE"),
    **dict.fromkeys(("conchita", "lucia", "enrique", "sergio"), "es-ES"),
    **dict.fromkeys(("mia", "andres"), "es-MX"),
    **dict.fromkeys(("lupe", "penelope", "miguel", "pedro"), "es-US"),
    **dict.fromkeys(("celine", "lea", "mathieu", "remi"), "fr-FR"),
    **dict.fromkeys(("chantal", "gabrielle", "liam"), "fr-CA"),
    **dict.fromkeys(("carla", "bianca", "giorgio", "adriano"), "it-IT"),
    **dict.fromkeys(("camila", "vitoria", "ricardo", "thiago"), "pt-BR"),
    **dict.fromkeys(("ines", "cristiano"), "pt-PT"),
    **dict.fromkeys(("mizuki", "takumi", "kazuha", "tomoko"), "ja-JP"),
    **dict.fromkeys(("seoyeon",), "ko-KR"),
    **dict.fromkeys(("zhiyu",), "cmn-CN"),
    **dict.fromkeys(("lotte", "ruben", "laura"), "nl-NL"),
}

# The language a callee in a country most likely understands, among the translated languages
# the standard voices speak. A country not listed gets a whole-English call (en-US).
_BY_REGION = {
    "US": "en-US", "PR": "en-US", "CA": "en-CA", "GB": "en-GB", "IE": "en-GB", "AU": "en-AU",
    "NZ": "en-AU", "IN": "en-IN",
    **dict.fromkeys(("ES", "MX", "AR", "CL", "CO", "PE", "VE", "EC", "UY", "PY", "BO", "CR", "PA", "GT",
                     "HN", "SV", "NI", "DO", "CU"), "es-ES"),
    **dict.fromkeys(("FR", "BE", "LU", "MC", "SN", "CI", "MA", "TN", "DZ"), "fr-FR"),
    **dict.fromkeys(("DE", "AT", "CH", "LI"), "de-DE"),
    **dict.fromkeys(("IT", "SM", "VA"), "it-IT"),
}

# Rules every phrase keeps (tests check them): a key is named as a numeral and is never followed
# by a period (German "7." is read "siebte"), nor by another digit; the code itself is never in
# a phrase (each digit is its own <Say>).
_TEXT = {
    "en": {
        "hello": "Hello. This is an automated call to check that this phone number is yours.",
        "hello_named": "Hello. {caller} asked to check that this phone number is yours.",
        "instruct": "You will hear a code. Read it only to the person you are speaking with now. "
                    "If you are not expecting this call, hang up.",
        "instruct_named": "You will hear a code. Read it only to the person from {caller} you are speaking "
                          "with now. If you are not expecting this call, hang up.",
        "press": "Press {key} to hear your code.",
        "wrong_key": "That was not the right key.",
        "no_key": "We did not hear a key press. Goodbye.",
        "code": "Your code is:",
        "code_slow": "Slowly now. Your code is:",
        "again": "Once again:",
        "options": "Press {repeat} to hear the code again, or {slower} to hear it more slowly.",
        "no_such_key": "That key does nothing here.",
        "no_more": "The code cannot be read again. Goodbye.",
        "goodbye": "Goodbye.",
        "unavailable": "Sorry, this call cannot go on right now. Please ask for a new code later. Goodbye.",
    },
    "de": {
        "hello": "Guten Tag. Mit diesem Anruf prüfen wir, ob diese Telefonnummer Ihnen gehört.",
        "hello_named": "Guten Tag. {caller} möchte prüfen, ob diese Telefonnummer Ihnen gehört.",
        "instruct": "Sie hören gleich einen Code. Nennen Sie ihn nur der Person, mit der Sie gerade sprechen. "
                    "Wenn Sie diesen Anruf nicht erwarten, legen Sie auf.",
        "instruct_named": "Sie hören gleich einen Code. Nennen Sie ihn nur der Person von {caller}, mit der Sie "
                          "gerade sprechen. Wenn Sie diesen Anruf nicht erwarten, legen Sie auf.",
        "press": "Drücken Sie die {key}, um Ihren Code zu hören.",
        "wrong_key": "Das war nicht die richtige Taste.",
        "no_key": "Wir haben keinen Tastendruck erhalten. Auf Wiederhören.",
        "code": "Ihr Code lautet:",
        "code_slow": "Jetzt langsamer. Ihr Code lautet:",
        "again": "Noch einmal:",
        "options": "Drücken Sie die {repeat}, um den Code noch einmal zu hören, oder die {slower}, "
                   "um ihn langsamer zu hören.",
        "no_such_key": "Diese Taste hat hier keine Funktion.",
        "no_more": "Der Code kann nicht noch einmal vorgelesen werden. Auf Wiederhören.",
        "goodbye": "Auf Wiederhören.",
        "unavailable": "Dieser Anruf kann leider gerade nicht weitergehen. Bitte fordern Sie später "
                       "einen neuen Code an. Auf Wiederhören.",
    },
    "es": {
        "hello": "Hola. Esta es una llamada automática para comprobar que este número de teléfono es suyo.",
        "hello_named": "Hola. {caller} quiere comprobar que este número de teléfono es suyo.",
        "instruct": "Va a oír un código. Dígaselo solo a la persona con la que está hablando ahora. "
                    "Si no esperaba esta llamada, cuelgue.",
        "instruct_named": "Va a oír un código. Dígaselo solo a la persona de {caller} con la que está hablando "
                          "ahora. Si no esperaba esta llamada, cuelgue.",
        "press": "Pulse {key} para oír su código.",
        "wrong_key": "Esa no es la tecla correcta.",
        "no_key": "No hemos recibido ninguna pulsación. Adiós.",
        "code": "Su código es:",
        "code_slow": "Ahora despacio. Su código es:",
        "again": "Repito:",
        "options": "Pulse {repeat} para oír el código otra vez, o {slower} para oírlo más despacio.",
        "no_such_key": "Esa tecla no tiene ninguna función aquí.",
        "no_more": "El código ya no se puede repetir. Adiós.",
        "goodbye": "Adiós.",
        "unavailable": "Lo sentimos, esta llamada no puede continuar ahora. Pida un código nuevo más tarde. Adiós.",
    },
    "fr": {
        "hello": "Bonjour. Ceci est un appel automatique pour vérifier que ce numéro de téléphone est bien le vôtre.",
        "hello_named": "Bonjour. {caller} souhaite vérifier que ce numéro de téléphone est bien le vôtre.",
        "instruct": "Vous allez entendre un code. Donnez-le uniquement à la personne avec qui vous parlez "
                    "en ce moment. Si vous n'attendez pas cet appel, raccrochez.",
        "instruct_named": "Vous allez entendre un code. Donnez-le uniquement à votre interlocuteur chez {caller}, "
                          "avec qui vous parlez en ce moment. Si vous n'attendez pas cet appel, raccrochez.",
        "press": "Appuyez sur {key} pour entendre votre code.",
        "wrong_key": "Ce n'est pas la bonne touche.",
        "no_key": "Nous n'avons reçu aucune touche. Au revoir.",
        "code": "Votre code est :",
        "code_slow": "Plus lentement. Votre code est :",
        "again": "Je répète :",
        "options": "Appuyez sur {repeat} pour réentendre le code, ou sur {slower} pour l'entendre plus lentement.",
        "no_such_key": "Cette touche n'a pas de fonction ici.",
        "no_more": "Le code ne peut plus être répété. Au revoir.",
        "goodbye": "Au revoir.",
        "unavailable": "Désolé, cet appel ne peut pas continuer pour le moment. Demandez un nouveau "
                       "code plus tard. Au revoir.",
    },
    "it": {
        "hello": "Buongiorno. Con questa chiamata verifichiamo che questo numero di telefono sia suo.",
        "hello_named": "Buongiorno. {caller} desidera verificare che questo numero di telefono sia suo.",
        "instruct": "Sentirà un codice. Lo comunichi solo alla persona con cui sta parlando ora. "
                    "Se non aspettava questa chiamata, riattacchi.",
        "instruct_named": "Sentirà un codice. Lo comunichi solo alla persona di {caller} con cui sta parlando "
                          "ora. Se non aspettava questa chiamata, riattacchi.",
        "press": "Prema {key} per ascoltare il suo codice.",
        "wrong_key": "Non è il tasto giusto.",
        "no_key": "Non abbiamo ricevuto alcun tasto. Arrivederci.",
        "code": "Il suo codice è:",
        "code_slow": "Ora lentamente. Il suo codice è:",
        "again": "Ripeto:",
        "options": "Prema {repeat} per riascoltare il codice, oppure {slower} per ascoltarlo più lentamente.",
        "no_such_key": "Questo tasto non ha nessuna funzione qui.",
        "no_more": "Il codice non può più essere ripetuto. Arrivederci.",
        "goodbye": "Arrivederci.",
        "unavailable": "Ci dispiace, questa chiamata non può proseguire ora. Chieda un nuovo codice "
                       "più tardi. Arrivederci.",
    },
}

TRANSLATED = frozenset(_TEXT)
# The languages a call may be in with the standard voices: spoken by them and translated here.
CALL_LANGUAGES = tuple(lang for lang in STANDARD_LANGUAGES if lang.split("-")[0] in _TEXT)


class LanguageError(ValueError):
    """The flags ask for a language the call cannot speak (a usage error)."""


@dataclass(frozen=True)
class Choice:
    language: str  # of every <Say> in the call
    notice: str | None = None  # for the operator, before dialing: why the call is not in the callee's language


def _base(language: str) -> str:
    return language.split("-")[0].lower()


def is_translated(language: str) -> bool:
    return _base(language) in TRANSLATED


def for_region(region: str | None) -> str:
    """The language a callee in `region` most likely understands; en-US when none is translated."""
    return _BY_REGION.get((region or "").upper(), DEFAULT_LANGUAGE)


def voice_language(voice: str) -> str | None:
    """The one language a named voice speaks, when it is known; None for the standard voices
    (which speak every language of STANDARD_LANGUAGES) and for voices not known here."""
    lowered = voice.lower()
    if lowered in STANDARD_VOICES:
        return None
    engine, _, rest = lowered.partition(".")
    if engine == "gcloud":
        m = re.match(r"([a-z]{2,3}-[a-z]{2})-", rest)
        return _canonical(m.group(1)) if m else None
    if engine in ("polly", "amazon"):
        name, *tail = rest.split(":")
        if engine == "amazon" and tail and re.fullmatch(r"[a-z]{2,3}-[a-z]{2}", tail[-1]):
            return _canonical(tail[-1])
        name = name.removesuffix("-neural").removesuffix("-generative")
        return POLLY_LANGUAGES.get(name)
    return None


def _canonical(language: str) -> str:
    base_, _, region = language.partition("-")
    return f"{base_.lower()}-{region.upper()}" if region else base_.lower()


def choose(*, language: str | None, voice: str | None, region: str | None) -> Choice:
    """The language of the call. Raises LanguageError (a usage error) naming what conflicts."""
    if voice is not None and voice.lower() not in STANDARD_VOICES:  # a named (Polly, …) voice
        spoken = voice_language(voice)
        if spoken is None and language is None:
            raise LanguageError(f"--voice {voice}: voice2fa cannot tell which language it speaks; "
                                f"give --language too (one of {', '.join(CALL_LANGUAGES)})")
        if spoken is not None and language is not None and spoken.lower() != language.lower():
            raise LanguageError(f"--voice {voice} speaks {spoken}, not --language {language}: "
                                f"drop one of them or make them agree")
        chosen = language or spoken
        assert chosen is not None
        if not is_translated(chosen):
            raise LanguageError(f"--voice {voice} speaks {chosen}, which voice2fa has no phrases for "
                                f"(translated: {', '.join(CALL_LANGUAGES)})")
        return Choice(_canonical(chosen))
    if language is not None:
        match = [lang for lang in STANDARD_LANGUAGES if lang.lower() == language.lower()]
        if not match:
            raise LanguageError(f"--language {language}: SignalWire's standard voices do not speak it "
                                f"(they speak {', '.join(STANDARD_LANGUAGES)})")
        if not is_translated(match[0]):
            raise LanguageError(f"--language {match[0]}: voice2fa has no phrases in it yet "
                                f"(choose one of {', '.join(CALL_LANGUAGES)})")
        return Choice(match[0])
    chosen = for_region(region)
    if region and region.upper() not in _BY_REGION:
        return Choice(chosen, f"voice2fa has no phrases for callees in {region.upper()}: "
                              f"the whole call will be in English ({chosen}); use --language to choose another")
    return Choice(chosen)


def phrase(language: str, name: str, **values: str) -> str:
    table = _TEXT.get(_base(language), _TEXT["en"])
    return table[name].format(**values)


def clean_caller_name(value: str, name: str) -> str:
    """The caller name as the call says it, or ValueError naming the setting. Letters (any
    script), digits, spaces and & ' . , - only: no markup, no control characters."""
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if not text:
        raise ValueError(f"{name} is empty: give the name the callee knows you by, e.g. \"Acme support\"")
    if len(text) > MAX_CALLER_NAME:
        raise ValueError(f"{name} is longer than {MAX_CALLER_NAME} characters")
    for ch in text:
        category = unicodedata.category(ch)
        if ch == " " or ch in "&'.,-" or category[0] == "L" or category in ("Nd", "Mn", "Mc"):
            continue
        raise ValueError(f"{name} may hold letters, digits, spaces and & ' . , - only (found {ch!r})")
    return text


PHRASE_NAMES = frozenset(_TEXT["en"])
