"""voice2fa_cli.speech and phrases: what the call says, as cXML, in every translated language;
how a callee hears a document; the language of a call; the caller name.

Every document is checked exactly, and against SignalWire's cXML reference written as data
below (signalwire/docs, fern/products/compatibility-api/pages/cxml/voice/say.mdx, gather.mdx,
pause.mdx, hangup.mdx)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import digit_runs
from voice2fa_cli.voice import phrases, speech
from voice2fa_cli.voice.speech import Heard, Voice, code_document, gate_document, render

CODE = "481234"
ACTION = "https://abc123.ngrok.app/v/tok/key?attempt=1&x=2"
READ = "https://abc123.ngrok.app/v/tok/read"

# --- SignalWire's cXML reference, as data ------------------------------------------------------------

ATTRIBUTES = {  # every attribute each verb documents
    "Response": set(),
    "Say": {"voice", "language", "loop"},
    "Gather": {"action", "actionOnEmptyResult", "enhanced", "finishOnKey", "hints", "input", "language",
               "method", "numDigits", "partialResultCallback", "partialResultCallbackMethod",
               "profanityFilter", "speechModel", "speechTimeout", "timeout"},
    "Pause": {"length"},
    "Hangup": set(),
}
NESTING = {  # what may nest in what ("No other verbs can be nested within <Say>" …)
    "Response": {"Say", "Gather", "Pause", "Hangup"},
    "Gather": {"Say", "Pause", "Play"},
    "Say": set(),  # plain text (SSML only where a voice supports it: none used here)
    "Pause": set(),
    "Hangup": set(),
}
INTEGER = {("Say", "loop"), ("Gather", "numDigits"), ("Gather", "timeout"), ("Pause", "length")}
CHOICES = {("Gather", "input"): {"dtmf", "speech", "dtmf speech"}, ("Gather", "method"): {"GET", "POST"}}
SAY_LIMIT = 4096  # unicode characters


def check_cxml(document: bytes) -> ET.Element:
    """Parse a document and check it against the reference; return its root."""
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = ET.fromstring(document)
    assert root.tag == "Response"

    def visit(el: ET.Element) -> None:
        assert el.tag in ATTRIBUTES, el.tag
        assert set(el.attrib) <= ATTRIBUTES[el.tag], (el.tag, el.attrib)
        for name, value in el.attrib.items():
            if (el.tag, name) in INTEGER:
                assert value.isdigit(), (el.tag, name, value)
            if (el.tag, name) in CHOICES:
                assert value in CHOICES[el.tag, name], (el.tag, name, value)
        if el.tag == "Gather":
            assert el.get("action", "").startswith("https://")  # an absolute URL: no re-request loop
        if el.tag == "Say":
            assert el.text and el.text.strip() and len(el.text) <= SAY_LIMIT
        elif el.tag != "Response" and el.tag != "Gather":
            assert not (el.text or "").strip()
        for child in el:
            assert child.tag in NESTING[el.tag], f"<{child.tag}> inside <{el.tag}>"
            assert not (child.tail or "").strip()
            visit(child)

    visit(root)
    return root


def shape(el: ET.Element) -> list:
    """A document as nested lists: ("Say", text) / ("Pause", seconds) / ("Gather", [...]) / "Hangup"."""
    out: list = []
    for child in el:
        if child.tag == "Say":
            out.append(("Say", child.text))
        elif child.tag == "Pause":
            out.append(("Pause", child.get("length")))
        elif child.tag == "Gather":
            out.append(("Gather", shape(child)))
        else:
            out.append(child.tag)
    return out


# --- the script, in every translated language, written out (a change to a phrase shows here) ------------

TEXT = {
    "en-US": {
        "hello": "Hello. This is an automated call to check that this phone number is yours.",
        "hello_acme": "Hello. Acme support asked to check that this phone number is yours.",
        "instruct": "You will hear a code. Read it only to the person you are speaking with now. "
                    "If you are not expecting this call, hang up.",
        "instruct_acme": "You will hear a code. Read it only to the person from Acme support you are speaking "
                         "with now. If you are not expecting this call, hang up.",
        "press7": "Press 7 to hear your code.",
        "wrong_key": "That was not the right key.",
        "no_key": "We did not hear a key press. Goodbye.",
        "code": "Your code is:",
        "code_slow": "Slowly now. Your code is:",
        "again": "Once again:",
        "options": "Press 1 to hear the code again, or 2 to hear it more slowly.",
        "no_such_key": "That key does nothing here.",
        "no_more": "The code cannot be read again. Goodbye.",
        "goodbye": "Goodbye.",
    },
    "de-DE": {
        "hello": "Guten Tag. Mit diesem Anruf prüfen wir, ob diese Telefonnummer Ihnen gehört.",
        "hello_acme": "Guten Tag. Acme support möchte prüfen, ob diese Telefonnummer Ihnen gehört.",
        "instruct": "Sie hören gleich einen Code. Nennen Sie ihn nur der Person, mit der Sie gerade sprechen. "
                    "Wenn Sie diesen Anruf nicht erwarten, legen Sie auf.",
        "instruct_acme": "Sie hören gleich einen Code. Nennen Sie ihn nur der Person von Acme support, mit der "
                         "Sie gerade sprechen. Wenn Sie diesen Anruf nicht erwarten, legen Sie auf.",
        "press7": "Drücken Sie die 7, um Ihren Code zu hören.",
        "wrong_key": "Das war nicht die richtige Taste.",
        "no_key": "Wir haben keinen Tastendruck erhalten. Auf Wiederhören.",
        "code": "Ihr Code lautet:",
        "code_slow": "Jetzt langsamer. Ihr Code lautet:",
        "again": "Noch einmal:",
        "options": "Drücken Sie die 1, um den Code noch einmal zu hören, oder die 2, um ihn langsamer zu hören.",
        "no_such_key": "Diese Taste hat hier keine Funktion.",
        "no_more": "Der Code kann nicht noch einmal vorgelesen werden. Auf Wiederhören.",
        "goodbye": "Auf Wiederhören.",
    },
    "es-ES": {
        "hello": "Hola. Esta es una llamada automática para comprobar que este número de teléfono es suyo.",
        "hello_acme": "Hola. Acme support quiere comprobar que este número de teléfono es suyo.",
        "instruct": "Va a oír un código. Dígaselo solo a la persona con la que está hablando ahora. "
                    "Si no esperaba esta llamada, cuelgue.",
        "instruct_acme": "Va a oír un código. Dígaselo solo a la persona de Acme support con la que está "
                         "hablando ahora. Si no esperaba esta llamada, cuelgue.",
        "press7": "Pulse 7 para oír su código.",
        "wrong_key": "Esa no es la tecla correcta.",
        "no_key": "No hemos recibido ninguna pulsación. Adiós.",
        "code": "Su código es:",
        "code_slow": "Ahora despacio. Su código es:",
        "again": "Repito:",
        "options": "Pulse 1 para oír el código otra vez, o 2 para oírlo más despacio.",
        "no_such_key": "Esa tecla no tiene ninguna función aquí.",
        "no_more": "El código ya no se puede repetir. Adiós.",
        "goodbye": "Adiós.",
    },
    "fr-FR": {
        "hello": "Bonjour. Ceci est un appel automatique pour vérifier que ce numéro de téléphone est bien le vôtre.",
        "hello_acme": "Bonjour. Acme support souhaite vérifier que ce numéro de téléphone est bien le vôtre.",
        "instruct": "Vous allez entendre un code. Donnez-le uniquement à la personne avec qui vous parlez en "
                    "ce moment. Si vous n'attendez pas cet appel, raccrochez.",
        "instruct_acme": "Vous allez entendre un code. Donnez-le uniquement à votre interlocuteur chez Acme "
                         "support, avec qui vous parlez en ce moment. Si vous n'attendez pas cet appel, raccrochez.",
        "press7": "Appuyez sur 7 pour entendre votre code.",
        "wrong_key": "Ce n'est pas la bonne touche.",
        "no_key": "Nous n'avons reçu aucune touche. Au revoir.",
        "code": "Votre code est :",
        "code_slow": "Plus lentement. Votre code est :",
        "again": "Je répète :",
        "options": "Appuyez sur 1 pour réentendre le code, ou sur 2 pour l'entendre plus lentement.",
        "no_such_key": "Cette touche n'a pas de fonction ici.",
        "no_more": "Le code ne peut plus être répété. Au revoir.",
        "goodbye": "Au revoir.",
    },
    "it-IT": {
        "hello": "Buongiorno. Con questa chiamata verifichiamo che questo numero di telefono sia suo.",
        "hello_acme": "Buongiorno. Acme support desidera verificare che questo numero di telefono sia suo.",
        "instruct": "Sentirà un codice. Lo comunichi solo alla persona con cui sta parlando ora. "
                    "Se non aspettava questa chiamata, riattacchi.",
        "instruct_acme": "Sentirà un codice. Lo comunichi solo alla persona di Acme support con cui sta "
                         "parlando ora. Se non aspettava questa chiamata, riattacchi.",
        "press7": "Prema 7 per ascoltare il suo codice.",
        "wrong_key": "Non è il tasto giusto.",
        "no_key": "Non abbiamo ricevuto alcun tasto. Arrivederci.",
        "code": "Il suo codice è:",
        "code_slow": "Ora lentamente. Il suo codice è:",
        "again": "Ripeto:",
        "options": "Prema 1 per riascoltare il codice, oppure 2 per ascoltarlo più lentamente.",
        "no_such_key": "Questo tasto non ha nessuna funzione qui.",
        "no_more": "Il codice non può più essere ripetuto. Arrivederci.",
        "goodbye": "Arrivederci.",
    },
}
LANGUAGES = list(TEXT)


def test_every_translated_language_is_tested_and_spoken_by_the_standard_voices():
    assert {lang.split("-")[0] for lang in LANGUAGES} == set(phrases.TRANSLATED)
    assert set(phrases.CALL_LANGUAGES) <= set(phrases.STANDARD_LANGUAGES)
    assert {lang.split("-")[0] for lang in phrases.CALL_LANGUAGES} == set(phrases.TRANSLATED)


def reading(code: str, *, slow: bool = False) -> list:
    out: list = []
    for g, group in enumerate(speech.groups(code)):
        if g:
            out.append(("Pause", "2" if slow else "1"))
        for d, digit in enumerate(group):
            if slow and d:
                out.append(("Pause", "1"))
            out.append(("Say", digit))
    return out


def say_attrs(root: ET.Element, language: str, voice: str | None = None) -> None:
    expected = {"language": language} | ({"voice": voice} if voice else {})
    for say in root.iter("Say"):
        assert say.attrib == expected


def gather_attrs(url: str) -> dict[str, str]:
    return {"input": "dtmf", "numDigits": "1", "timeout": "12", "action": url, "method": "POST"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_gate(language):
    t = TEXT[language]
    root = check_cxml(gate_document("7", ACTION, Voice(language=language)))
    assert shape(root) == [("Say", t["hello"]), ("Say", t["instruct"]), ("Gather", [("Say", t["press7"])]),
                           ("Say", t["no_key"]), "Hangup"]
    assert root.find("Gather").attrib == gather_attrs(ACTION)
    say_attrs(root, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_gate_with_a_caller_name(language):
    t = TEXT[language]
    root = check_cxml(gate_document("7", ACTION, Voice(language=language, caller="Acme support")))
    assert shape(root)[:2] == [("Say", t["hello_acme"]), ("Say", t["instruct_acme"])]


@pytest.mark.parametrize("language", LANGUAGES)
def test_wrong_key(language):
    t = TEXT[language]
    root = check_cxml(gate_document("7", ACTION, Voice(language=language, caller="Acme support"), retry=True))
    assert shape(root) == [("Say", t["wrong_key"]), ("Gather", [("Say", t["press7"])]), ("Say", t["no_key"]),
                           "Hangup"]
    say_attrs(root, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_key(language):
    """The gate with no key pressed: the <Gather> times out and the call says so and ends."""
    t = TEXT[language]
    heard = render(gate_document("7", ACTION, Voice(language=language)))
    assert heard.lines == (t["hello"], t["instruct"], t["press7"], "[waits for a key]", t["no_key"], "[hangs up]")
    assert heard.prompt == (t["press7"],)


@pytest.mark.parametrize("language", LANGUAGES)
def test_code(language):
    """After the gate: the code in groups, twice, inside a <Gather> that offers the keys."""
    t = TEXT[language]
    root = check_cxml(code_document(CODE, Voice(language=language, voice="woman"), after_gate=True, action=READ))
    assert shape(root) == [
        ("Gather", [("Say", t["code"]), *reading(CODE), ("Pause", "1"), ("Say", t["again"]), *reading(CODE),
                    ("Pause", "1"), ("Say", t["options"])]),
        ("Say", t["goodbye"]),
        "Hangup",
    ]
    assert root.find("Gather").attrib == gather_attrs(READ)
    say_attrs(root, language, "woman")


@pytest.mark.parametrize("language", LANGUAGES)
def test_code_without_a_gate_starts_with_the_opening(language):
    t = TEXT[language]
    root = check_cxml(code_document(CODE, Voice(language=language), action=READ))
    assert shape(root)[:2] == [("Say", t["hello"]), ("Say", t["instruct"])]
    assert shape(root)[2][0] == "Gather"


@pytest.mark.parametrize("language", LANGUAGES)
def test_repeat(language):
    """The repeat key's document (the last one allowed: no <Gather>, nothing more offered)."""
    t = TEXT[language]
    root = check_cxml(code_document(CODE, Voice(language=language), after_gate=True))
    assert shape(root) == [("Say", t["code"]), *reading(CODE), ("Pause", "1"), ("Say", t["again"]),
                           *reading(CODE), ("Say", t["goodbye"]), "Hangup"]
    say_attrs(root, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_slower(language):
    t = TEXT[language]
    root = check_cxml(code_document("4812345", Voice(language=language), after_gate=True, slow=True, action=READ))
    assert shape(root) == [
        ("Gather", [("Say", t["code_slow"]),
                    ("Say", "4"), ("Pause", "1"), ("Say", "8"), ("Pause", "1"), ("Say", "1"), ("Pause", "2"),
                    ("Say", "2"), ("Pause", "1"), ("Say", "3"), ("Pause", "1"), ("Say", "4"), ("Pause", "1"),
                    ("Say", "5"),
                    ("Pause", "1"), ("Say", t["again"]), *reading("4812345", slow=True),
                    ("Pause", "1"), ("Say", t["options"])]),
        ("Say", t["goodbye"]),
        "Hangup",
    ]
    say_attrs(root, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_goodbye(language):
    t = TEXT[language]
    root = check_cxml(speech.goodbye_document(Voice(language=language)))
    assert shape(root) == [("Say", t["goodbye"]), "Hangup"]
    root = check_cxml(speech.goodbye_document(Voice(language=language), no_more=True))
    assert shape(root) == [("Say", t["no_more"]), "Hangup"]
    say_attrs(root, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_key_that_does_nothing(language):
    t = TEXT[language]
    root = check_cxml(speech.unknown_key_document(READ, Voice(language=language)))
    assert shape(root) == [("Say", t["no_such_key"]), ("Gather", [("Say", t["options"])]), ("Say", t["goodbye"]),
                           "Hangup"]
    assert root.find("Gather").attrib == gather_attrs(READ)


# --- pacing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "groups"), [
    ("123456", ["123", "456"]), ("1234567", ["123", "4567"]), ("12345678", ["1234", "5678"]),
    ("123456789", ["123", "456", "789"]), ("1234567890", ["123", "456", "7890"]),
])
def test_digits_are_grouped_by_three_or_four(code, groups):
    assert speech.groups(code) == groups


@settings(max_examples=100)
@given(st.text(alphabet="0123456789", min_size=6, max_size=10), st.booleans(), st.booleans(),
       st.sampled_from(LANGUAGES))
def test_any_code_is_read_digit_by_digit_at_least_twice(code, slow, offer, language):
    document = speech.code_document(code, Voice(language=language), slow=slow, action=READ if offer else None)
    root = check_cxml(document)
    assert digit_runs(root).count(code) >= 2
    for say in root.iter("Say"):
        assert not re.search(r"[0-9]\s*[0-9]", say.text), say.text  # never two digits together
        assert not re.search(r"[0-9][.,]?[0-9]", say.text)
    assert code.encode() not in document


def test_every_key_window_is_10_to_15_seconds():
    for document in (gate_document("7", ACTION, Voice()), code_document(CODE, Voice(), action=READ),
                     speech.unknown_key_document(READ, Voice())):
        for gather in ET.fromstring(document).iter("Gather"):
            assert 10 <= int(gather.get("timeout")) <= 15


@pytest.mark.parametrize("base", sorted(phrases.TRANSLATED))
def test_phrases_never_put_a_period_after_a_digit(base):
    """German "7." is read "siebte", "4.5" a decimal: a key is never followed by a period or a
    digit, in any phrase, whatever the key."""
    for name, text in phrases._TEXT[base].items():
        for key in "0123456789":
            said = text.format(key=key, repeat=key, slower=key, caller="Acme")
            assert not re.search(r"[0-9]\s*[.:;]", said), (base, name, said)
            assert not re.search(r"[0-9][.,]?[0-9]", said), (base, name, said)


def test_every_language_has_every_phrase_with_the_same_placeholders():
    names = {name: set(re.findall(r"{(\w+)}", text)) for name, text in phrases._TEXT["en"].items()}
    for base, table in phrases._TEXT.items():
        assert {name: set(re.findall(r"{(\w+)}", text)) for name, text in table.items()} == names, base


def test_render_a_spoken_number_stays_whole():
    # A document that reads "481234" in one <Say> is heard as one number: render does not hide it.
    assert speech.render("<Response><Say>481234</Say></Response>").lines == ("481234",)


@pytest.mark.parametrize("document", [b"", b"not xml", b"<Response>", b"<Response><Say></Response>", "\x00"])
def test_render_refuses_non_xml(document):
    with pytest.raises(ValueError) as info:
        speech.render(document)
    assert str(info.value).startswith("not XML: ")


@pytest.mark.parametrize(("document", "root"), [("<Foo/>", "Foo"), ("<response><Say>1</Say></response>", "response"), ("<html><body/></html>", "html")])
def test_render_refuses_a_root_other_than_response(document, root):
    with pytest.raises(ValueError) as info:
        speech.render(document)
    assert str(info.value) == f"the root element is <{root}>, not <Response>"



def test_render_the_code_document_one_line_per_reading():
    heard = render(code_document(CODE, Voice(language="en-GB"), after_gate=True, action=READ))
    t = TEXT["en-US"]
    assert heard == Heard(
        lines=(t["code"], "4, 8, 1, 2, 3, 4", t["again"], "4, 8, 1, 2, 3, 4", t["options"], "[waits for a key]",
               t["goodbye"], "[hangs up]"),
        gather=gather_attrs(READ),
        languages=("en-GB",) * 16,
        prompt=(t["code"], "4, 8, 1, 2, 3, 4", t["again"], "4, 8, 1, 2, 3, 4", t["options"]),
        until_key=6,
    )


def test_render_keeps_a_reading_whole_across_pauses():
    heard = render('<Response><Say>1</Say><Pause length="1"/><Say>2</Say><Say>3</Say><Say>Next.</Say></Response>')
    assert heard.lines == ("1, 2, 3", "Next.")
    assert heard.languages == ()


# --- hostile text: the operator's sentence, the caller name, attribute values ------------------------------


def test_a_custom_intro_replaces_the_opening_sentence_only():
    root = check_cxml(gate_document("7", ACTION, Voice(intro="Acme Bank here.", caller="Acme Bank")))
    assert shape(root)[:2] == [("Say", "Acme Bank here."), ("Say", TEXT["en-US"]["instruct"].replace(
        "the person you", "the person from Acme Bank you"))]


@pytest.mark.parametrize("hostile", [
    '<Say>x</Say> & "q"',
    "]]></Say><Redirect>https://evil.example/</Redirect><Say>",
    '<break time="10s"/><say-as interpret-as="digits">123456</say-as>',
    "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e 'boom'>]>&e;",
])
def test_hostile_text_stays_text(hostile):
    for voice in (Voice(intro=hostile), Voice(caller=hostile)):
        document = gate_document("7", ACTION, voice)
        root = check_cxml(document)
        assert hostile in [say.text for say in root.iter("Say")] or any(
            hostile in (say.text or "") for say in root.iter("Say"))
        assert [el.tag for el in root.iter()] == ["Response", "Say", "Say", "Gather", "Say", "Say", "Hangup"]
        assert b"<Redirect" not in document and b"<break" not in document and b"<!ENTITY" not in document


def test_hostile_language_and_voice_stay_attribute_values():
    voice = Voice(language='en-US" evil="1', voice="<Polly>&")
    root = ET.fromstring(code_document(CODE, voice))
    for say in root.iter("Say"):
        assert say.attrib == {"language": 'en-US" evil="1', "voice": "<Polly>&"}


@pytest.mark.parametrize("name", ["Acme support", "AT&T", "O'Brien & Söhne", "Zürich Versicherung", "株式会社アクメ",
                                  "3M help-desk", "  Acme \t  support  "])
def test_caller_names_that_are_accepted(name):
    cleaned = phrases.clean_caller_name(name, "--caller-name")
    assert cleaned == " ".join(name.split())
    root = check_cxml(gate_document("7", ACTION, Voice(caller=cleaned)))
    assert cleaned in root[0].text


@pytest.mark.parametrize(("name", "message"), [
    ("", 'VOICE2FA_CALLER_NAME is empty: give the name the callee knows you by, e.g. "Acme support"'),
    ("   ", 'VOICE2FA_CALLER_NAME is empty: give the name the callee knows you by, e.g. "Acme support"'),
    ("A" * 41, "VOICE2FA_CALLER_NAME is longer than 40 characters"),
    ("<Say>hi</Say>", "VOICE2FA_CALLER_NAME may hold letters, digits, spaces and & ' . , - only (found '<')"),
    ('<break time="10s"/>', "VOICE2FA_CALLER_NAME may hold letters, digits, spaces and & ' . , - only (found '<')"),
    ("Acme\x1b[31m", "VOICE2FA_CALLER_NAME may hold letters, digits, spaces and & ' . , - only (found '\\x1b')"),
    ("Acme\x00", "VOICE2FA_CALLER_NAME may hold letters, digits, spaces and & ' . , - only (found '\\x00')"),
    ("Acme\u202esupport", "VOICE2FA_CALLER_NAME may hold letters, digits, spaces and & ' . , - only (found '\\u202e')"),
    ("Acme {key}", "VOICE2FA_CALLER_NAME may hold letters, digits, spaces and & ' . , - only (found '{')"),
    ("Acme: your code is", "VOICE2FA_CALLER_NAME may hold letters, digits, spaces and & ' . , - only (found ':')"),
])
def test_hostile_caller_names_are_refused(name, message):
    with pytest.raises(ValueError) as info:
        phrases.clean_caller_name(name, "VOICE2FA_CALLER_NAME")
    assert str(info.value) == message


def test_a_caller_name_with_braces_cannot_reach_format():
    # Even past the cleaner, the name is a format value, never a format string.
    root = ET.fromstring(gate_document("7", ACTION, Voice(caller="{key} {0}")))
    assert root[0].text == "Hello. {key} {0} asked to check that this phone number is yours."


# --- the language of the call ----------------------------------------------------------------------------


def test_a_voice_in_a_language_without_phrases_cannot_be_made():
    with pytest.raises(ValueError):
        Voice(language="ja-JP")


def test_every_country_the_map_picks_is_spoken_and_translated():
    for region, language in phrases._BY_REGION.items():
        assert language in phrases.CALL_LANGUAGES, (region, language)
        assert phrases.choose(language=None, voice=None, region=region) == phrases.Choice(language)


@pytest.mark.parametrize("region", ["JP", "KR", "HK", "TW", "NO", "BR", "NL", "CN"])
def test_a_country_without_a_translation_gets_a_whole_english_call_and_a_notice(region):
    choice = phrases.choose(language=None, voice=None, region=region)
    assert choice == phrases.Choice("en-US", f"voice2fa has no phrases for callees in {region}: the whole call "
                                             "will be in English (en-US); use --language to choose another")
    root = ET.fromstring(gate_document("7", ACTION, Voice(language=choice.language)))
    assert {say.get("language") for say in root.iter("Say")} == {"en-US"}


@pytest.mark.parametrize(("voice", "language", "region", "chosen"), [
    ("Polly.Joanna", None, "FR", "en-US"),  # a named voice brings its own language
    ("Polly.Joanna-Neural", None, None, "en-US"),
    ("polly.celine", None, "US", "fr-FR"),
    ("Polly.Vicki", "de-DE", "US", "de-DE"),
    ("Polly.Mia", None, "MX", "es-MX"),  # a Spanish voice: Spanish phrases
    ("amazon.Amy:generative:en-GB", None, "US", "en-GB"),
    ("gcloud.it-IT-Standard-A", None, "US", "it-IT"),
    ("elevenlabs.thomas", "fr-FR", "US", "fr-FR"),  # unknown to voice2fa: --language decides
    ("woman", "de-DE", "US", "de-DE"),
    ("man", None, "IT", "it-IT"),
    (None, "en-gb", "FR", "en-GB"),
])
def test_the_language_of_the_call(voice, language, region, chosen):
    assert phrases.choose(language=language, voice=voice, region=region) == phrases.Choice(chosen)


@pytest.mark.parametrize(("voice", "language", "message"), [
    ("Polly.Joanna", "fr-FR", "--voice Polly.Joanna speaks en-US, not --language fr-FR: drop one of them or make them agree"),
    ("gcloud.de-DE-Wavenet-B", "de-AT", "--voice gcloud.de-DE-Wavenet-B speaks de-DE, not --language de-AT: drop one of them or make them agree"),
    ("Polly.Camila", None, "--voice Polly.Camila speaks pt-BR, which voice2fa has no phrases for (translated: en-US, en-GB, en-IN, en-AU, en-CA, de-DE, es-ES, it-IT, fr-FR)"),
    ("Polly.Mizuki", "ja-JP", "--voice Polly.Mizuki speaks ja-JP, which voice2fa has no phrases for (translated: en-US, en-GB, en-IN, en-AU, en-CA, de-DE, es-ES, it-IT, fr-FR)"),
    ("elevenlabs.thomas", None, "--voice elevenlabs.thomas: voice2fa cannot tell which language it speaks; give --language too (one of en-US, en-GB, en-IN, en-AU, en-CA, de-DE, es-ES, it-IT, fr-FR)"),
    (None, "nb-NO", "--language nb-NO: SignalWire's standard voices do not speak it (they speak en-US, en-GB, en-IN, en-AU, en-CA, de-DE, es-ES, it-IT, ja-JP, fr-FR)"),
    ("woman", "ja-JP", "--language ja-JP: voice2fa has no phrases in it yet (choose one of en-US, en-GB, en-IN, en-AU, en-CA, de-DE, es-ES, it-IT, fr-FR)"),
])
def test_languages_the_call_cannot_speak_are_usage_errors(voice, language, message):
    with pytest.raises(phrases.LanguageError) as info:
        phrases.choose(language=language, voice=voice, region="US")
    assert str(info.value) == message


@settings(max_examples=200)
@given(st.text(max_size=60))
def test_any_caller_name_is_refused_or_said_as_plain_text(raw):
    try:
        name = phrases.clean_caller_name(raw, "--caller-name")
    except ValueError as exc:
        assert str(exc).startswith("--caller-name ")
        assert all(ch.isprintable() for ch in str(exc))  # a control character is shown escaped
        return
    assert 1 <= len(name) <= phrases.MAX_CALLER_NAME and name == name.strip()
    assert not set(name) & set("<>&\"{}[]:;/\\=") - {"&"}
    root = check_cxml(gate_document("7", ACTION, Voice(caller=name)))
    assert root[0].text == f"Hello. {name} asked to check that this phone number is yours."
    assert [el.tag for el in root.iter()] == ["Response", "Say", "Say", "Gather", "Say", "Say", "Hangup"]
