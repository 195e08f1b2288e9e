"""A call's voice options from a person's flags (send, preview) or an API form (serve), checked
once: the language, the voice name, the operator's own first sentence, who is calling.

Each face words the error for its user (a Click parameter, a Twilio error): OptionError names
which option was wrong and why.
"""

from __future__ import annotations

import re

from voice2fa_cli.voice import phrases, speech

LANGUAGE_SHAPE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
VOICE_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_\-]{0,63}")


class OptionError(ValueError):
    """An option the call cannot take. `option`: language, voice, message or caller;
    `shape`: the text was not of the option's form (else the call cannot speak it)."""

    def __init__(self, option: str, detail: str, *, shape: bool = True) -> None:
        super().__init__(detail)
        self.option = option
        self.detail = detail
        self.shape = shape


def clean_message(message: str) -> str:
    """The operator's first sentence: one line of printable text, spaces folded."""
    text = " ".join(message.split())
    if not text or len(text) > speech.MAX_INTRO or not text.isprintable():
        raise OptionError("message", f"plain printable text of 1 to {speech.MAX_INTRO} characters")
    return text


def voice_options(*, language: str | None, voice: str | None, message: str | None, caller: str | None,
                  region: str | None, caller_setting: str = "the caller name") -> tuple[speech.Voice, str | None]:
    """The call's voice and a notice for the operator when the call is not in the callee's
    language (`region`: the callee's country). `caller_setting` names where the caller name came
    from, for its message."""
    if language is not None and not LANGUAGE_SHAPE.fullmatch(language):
        raise OptionError("language", "a language code such as en-US or fr-FR")
    if voice is not None and not VOICE_SHAPE.fullmatch(voice):
        raise OptionError("voice", "a voice name such as man, woman or Polly.Joanna")
    intro = clean_message(message) if message is not None else None
    if caller is not None:
        try:
            caller = phrases.clean_caller_name(caller, caller_setting)
        except ValueError as exc:
            raise OptionError("caller", str(exc)) from None
    try:
        choice = phrases.choose(language=language, voice=voice, region=region)
    except phrases.LanguageError as exc:
        raise OptionError("language", str(exc), shape=False) from None
    return speech.Voice(language=choice.language, voice=voice, intro=intro, caller=caller), choice.notice
