"""What text engines get: emoji dropped the same way for every engine, scripts an engine cannot read refused."""

from __future__ import annotations

import pytest

from audiosubnet.engines import text
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.errors import InputError


def test_prepare_drops_emoji_and_pictographs_keeps_what_is_spoken():
    assert text.prepare("Party time 🎉🥳 at 9 pm 👍🏽!") == "Party time at 9 pm !"
    assert text.prepare("Family: 👨‍👩‍👧 ok ❤️ ✅ ★") == "Family: ok"
    assert text.prepare("It is 20°C ™ ©") == "It is 20°C ™ ©"  # symbols that are words stay
    assert text.prepare("It costs $12.50 (+3%) ＡＢＣ ﬁne x² ½") == "It costs $12.50 (+3%) ABC fine x² ½"


def test_scripts_of_languages():
    assert text.scripts_for_language("en_US") == ("Latn",)
    assert text.scripts_for_language("rus") == ("Cyrl",)
    assert set(text.scripts_for_language("ja")) == {"Hani", "Hira", "Kana"}
    assert text.scripts_for_language("*") is None and text.scripts_for_language("und") is None
    assert text.scripts_of("Hello 你好 мир") == {"Latn": 5, "Hani": 2, "Cyrl": 3}


def test_drop_scripts_keeps_the_rest():
    assert text.drop_scripts("Meet 王小明 at noon, مرحبا.", ("Latn",)) == "Meet at noon, ."


@pytest.mark.parametrize("model", ["espeak:en-us", "piper:en_US-joe-medium", "fake"])
def test_every_engine_refuses_a_script_it_cannot_read_and_says_which(model):
    from audiosubnet.engines import registry

    e = registry.create(model)  # not loaded: the check reads only what the model declares
    e.check(SynthesisRequest("Hello there, café naïve."))
    for sample, script in (("你好，世界", "Chinese"), ("مرحبا بالعالم", "Arabic"), ("Hello Привет", "Cyrillic")):
        with pytest.raises(InputError, match=script):
            e.check(SynthesisRequest(sample))
    with pytest.raises(InputError, match="nothing to pronounce"):
        e.check(SynthesisRequest("🎉🥳 👍"))


def test_espeak_reads_the_script_of_the_voice_it_is_asked_for():
    from audiosubnet.engines import registry

    e = registry.create("espeak:en-us")
    e.check(SynthesisRequest("Привет, мир", voice="ru"))
    with pytest.raises(InputError):
        e.check(SynthesisRequest("Привет, мир"))


def test_emoji_do_not_reach_the_engine(cpu_cache):
    with cpu_cache.engine("espeak:en-us") as e:
        plain = e.synthesize([SynthesisRequest("Good news everyone.")])[0]
        emoji = e.synthesize([SynthesisRequest("Good news 🎉🥳 everyone. 👍")])[0]
    assert plain.duration == pytest.approx(emoji.duration, abs=0.05)
