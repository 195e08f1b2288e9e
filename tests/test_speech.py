"""voice2fa_cli.speech: what the call says, as cXML, and how a callee hears a document."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import digit_runs
from voice2fa_cli import speech
from voice2fa_cli.speech import Heard, Voice, code_document, gate_document, render

CODE = "481234"
VOICE = Voice(language="en-GB", voice="woman")
ACTION = "https://abc123.ngrok.app/v/tok/gate?attempt=1&x=2"


def parse(document: bytes) -> ET.Element:
    root = ET.fromstring(document)
    assert root.tag == "Response"
    return root


def says(root: ET.Element) -> list[ET.Element]:
    return list(root.iter("Say"))


# --- code_document -----------------------------------------------------------------------------------


def test_code_document_is_xml_with_a_declaration():
    document = speech.code_document(CODE, VOICE)
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    parse(document)


def test_each_digit_is_its_own_say_and_the_code_is_read_twice():
    root = parse(speech.code_document(CODE, VOICE))
    assert digit_runs(root) == [CODE, CODE]


def test_the_code_is_never_one_number():
    root = parse(speech.code_document(CODE, VOICE))
    for say in says(root):
        text = say.text or ""
        assert text.strip() != CODE
        assert len(re.findall(r"[0-9]", text)) <= 1, text


@settings(max_examples=100)
@given(st.text(alphabet="0123456789", min_size=6, max_size=10))
def test_any_code_is_read_digit_by_digit_at_least_twice(code):
    root = parse(speech.code_document(code, Voice()))
    assert digit_runs(root).count(code) >= 2
    for say in says(root):
        assert say.text != code
        assert len(re.findall(r"[0-9]", say.text or "")) <= 1


def test_the_code_document_as_a_whole():
    root = parse(speech.code_document(CODE, VOICE))
    assert [(child.tag, child.text, child.attrib) for child in root] == (
        [("Say", "Hello. This is your verification code.", {"language": "en-GB", "voice": "woman"})]
        + [("Say", d, {"language": "en-GB", "voice": "woman"}) for d in CODE]
        + [("Pause", None, {"length": "1"}), ("Say", "Once again, your code is:", {"language": "en-GB", "voice": "woman"})]
        + [("Say", d, {"language": "en-GB", "voice": "woman"}) for d in CODE]
        + [("Pause", None, {"length": "1"}), ("Say", "Goodbye.", {"language": "en-GB", "voice": "woman"}),
           ("Hangup", None, {})]
    )


def test_language_and_voice_on_every_say():
    root = parse(speech.code_document(CODE, VOICE))
    assert len(says(root)) == 15
    for say in says(root):
        assert say.get("language") == "en-GB"
        assert say.get("voice") == "woman"


def test_default_voice_is_en_us_without_a_voice_attribute():
    root = parse(speech.code_document(CODE, Voice()))
    for say in says(root):
        assert say.attrib == {"language": "en-US"}


def test_code_document_ends_with_hangup():
    root = parse(speech.code_document(CODE, VOICE))
    assert root[-1].tag == "Hangup"
    assert len(root[-1]) == 0
    assert root[-1].text is None


def test_after_the_gate_it_starts_with_your_code_is():
    root = parse(speech.code_document(CODE, VOICE, after_gate=True))
    assert root[0].text == "Your code is:"
    assert digit_runs(root) == [CODE, CODE]
    assert root[-1].tag == "Hangup"


def test_a_custom_intro_replaces_the_default():
    root = parse(speech.code_document(CODE, Voice(intro="Acme Bank here.")))
    assert root[0].text == "Acme Bank here."


def test_a_hostile_intro_survives_as_text():
    intro = '<Say>x</Say> & "q"'
    document = speech.code_document(CODE, Voice(intro=intro))
    assert b"<Say>x</Say>" not in document
    root = parse(document)
    assert root[0].tag == "Say"
    assert root[0].text == intro
    assert len(root[0]) == 0
    assert len(says(root)) == 15  # no <Say> smuggled in
    assert digit_runs(root) == [CODE, CODE]


def test_a_hostile_intro_cannot_close_the_document():
    intro = "]]></Say><Redirect>https://evil.example/</Redirect><Say>"
    root = parse(speech.code_document(CODE, Voice(intro=intro)))
    assert root[0].text == intro
    assert list(root.iter("Redirect")) == []


def test_hostile_language_and_voice_stay_attribute_values():
    voice = Voice(language='en-US" evil="1', voice="<Polly>&")
    root = parse(speech.code_document(CODE, voice))
    for say in says(root):
        assert say.attrib == {"language": 'en-US" evil="1', "voice": "<Polly>&"}


# --- gate_document --------------------------------------------------------------------------------------


def test_gate_document():
    root = parse(speech.gate_document("7", ACTION, VOICE))
    attrs = {"language": "en-GB", "voice": "woman"}
    assert root[0].tag == "Say" and root[0].text == "Hello. This is your verification code."
    gather = root[1]
    assert gather.tag == "Gather"
    assert gather.get("numDigits") == "1"
    assert gather.get("method") == "POST"
    assert gather.get("action") == ACTION
    assert [(c.tag, c.text, c.attrib) for c in gather] == [("Say", "Press 7 to hear your code.", attrs)]
    assert [(c.tag, c.text) for c in root[2:]] == [("Say", "We did not hear a key press. Goodbye."), ("Hangup", None)]


@pytest.mark.parametrize("key", list("0123456789"))
def test_gate_names_the_key_as_a_numeral(key):
    root = parse(speech.gate_document(key, ACTION, Voice()))
    (prompt,) = root.find("Gather")
    assert prompt.text == f"Press {key} to hear your code."


def test_gate_retry_says_the_key_was_wrong():
    root = parse(speech.gate_document("7", ACTION, VOICE, retry=True))
    assert root[0].text == "That was not 7."
    assert "Hello" not in (root[0].text or "")
    (prompt,) = root.find("Gather")
    assert prompt.text == "Press 7 to hear your code."
    assert root[-1].tag == "Hangup"


def test_gate_document_carries_no_digits_but_the_key():
    root = parse(speech.gate_document("7", ACTION, VOICE))
    spoken = "".join(say.text or "" for say in says(root))
    assert re.findall(r"[0-9]", spoken) == ["7"]


def test_gate_uses_the_custom_intro():
    root = parse(speech.gate_document("3", ACTION, Voice(intro="Acme Bank here.")))
    assert root[0].text == "Acme Bank here."


def test_gate_action_url_is_escaped():
    document = speech.gate_document("7", ACTION, VOICE)
    assert b"attempt=1&amp;x=2" in document
    assert parse(document).find("Gather").get("action") == ACTION


def test_goodbye_document():
    root = parse(speech.goodbye_document(Voice()))
    assert [(c.tag, c.text) for c in root] == [("Say", "Goodbye."), ("Hangup", None)]


# --- render ------------------------------------------------------------------------------------------------


def test_render_code_document():
    assert speech.render(speech.code_document(CODE, VOICE)) == Heard(
        lines=(
            "Hello. This is your verification code.",
            "4, 8, 1, 2, 3, 4",
            "Once again, your code is:",
            "4, 8, 1, 2, 3, 4",
            "Goodbye.",
            "[hangs up]",
        ),
        gather=None,
        languages=("en-GB",) * 15,
        prompt=(),
        until_key=6,
    )


def test_render_gate_document():
    heard = speech.render(speech.gate_document("7", ACTION, Voice()))
    assert heard == Heard(
        lines=(
            "Hello. This is your verification code.",
            "Press 7 to hear your code.",
            "[waits for a key]",
            "We did not hear a key press. Goodbye.",
            "[hangs up]",
        ),
        gather={"numDigits": "1", "method": "POST", "action": ACTION, "timeout": "8"},
        languages=("en-US",) * 3,
        prompt=("Press 7 to hear your code.",),
        until_key=3,
    )


def test_render_retry_gate():
    heard = speech.render(speech.gate_document("7", ACTION, Voice(), retry=True))
    assert heard.lines[:3] == ("That was not 7.", "Press 7 to hear your code.", "[waits for a key]")
    assert heard.prompt == ("Press 7 to hear your code.",)
    assert heard.until_key == 3


def test_render_accepts_str_and_splits_digits_at_pauses():
    heard = speech.render('<Response><Say>1</Say><Say>2</Say><Pause length="1"/><Say>3</Say><Say>4</Say></Response>')
    assert heard.lines == ("1, 2", "3, 4")
    assert heard.languages == ()
    assert heard.until_key == 2


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


# --- languages ---------------------------------------------------------------------------------


def test_a_translated_language_speaks_every_sentence_in_it():
    root = ET.fromstring(code_document("123456", Voice(language="fr-FR")))
    says = [(el.text, el.get("language")) for el in root.iter("Say")]
    assert says[0] == ("Bonjour. Voici votre code de vérification.", "fr-FR")
    assert ("Je répète, votre code est :", "fr-FR") in says
    assert says[-1] == ("Au revoir.", "fr-FR")
    assert {lang for _, lang in says} == {"fr-FR"}


@pytest.mark.parametrize(
    ("language", "press"),
    [("es-ES", "Pulse 7 para escuchar su código."), ("de-DE", "Drücken Sie die 7, um Ihren Code zu hören."),
     ("it-IT", "Prema 7 per ascoltare il suo codice."), ("pt-BR", "Pressione 7 para ouvir o seu código."),
     ("en-US", "Press 7 to hear your code.")],
)
def test_the_gate_names_the_key_as_a_numeral_in_each_language(language, press):
    heard = render(gate_document("7", "https://x.example/v/t/key", Voice(language=language)))
    assert heard.prompt == (press,)


def test_an_untranslated_language_falls_back_to_english_text_with_native_digits():
    root = ET.fromstring(code_document("123456", Voice(language="nl-NL")))
    says = [(el.text, el.get("language")) for el in root.iter("Say")]
    assert says[0] == ("Hello. This is your verification code.", "en-US")
    assert [lang for text, lang in says if text.isdigit()] == ["nl-NL"] * 12


def test_language_from_the_callee_country():
    from voice2fa_cli import phrases

    assert [phrases.for_region(r) for r in ("FR", "US", "MX", "BR", "DE", "ZZ", None)] == [
        "fr-FR", "en-US", "es-MX", "pt-BR", "de-DE", "en-US", "en-US"
    ]
