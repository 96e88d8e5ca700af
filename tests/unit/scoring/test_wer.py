"""English normalisation and error rates: formatting differences are not errors, real ones are."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiosubnet.scoring.normalize import normalize
from audiosubnet.scoring.wer import error_rates, levenshtein, word_errors


@pytest.mark.parametrize(("ref", "hyp"), [
    ("Hello, and welcome to the audio subnet.", "hello and welcome to the audio subnet"),
    ("It costs $12.50 each.", "It costs twelve dollars fifty each"),
    ("It costs $12.50 each.", "It costs twelve dollars and fifty cents each."),
    ("It costs $12.50 each.", "It costs dollar 12.50 each."),
    ("Turnout rose by 3.7% to 64,512 voters.", "turnout rose by three point seven percent to sixty four thousand "
                                              "five hundred and twelve voters"),
    ("The meeting moved from 9:30 to 11:45.", "The meeting moved from nine thirty to eleven forty five."),
    ("The meeting moved from 9:30 to 11:45.", "The meeting moved from 930 to 1145."),
    ("We met in 1999 on the 3rd of May.", "we met in nineteen ninety nine on the third of may"),
    ("She sells sea shells by the sea shore.", "She sells seashells by the seashore."),
    ("The satellite is code-named ASTRA-2.", "The satellite is codenamed Astra 2."),
    ("I won't go; it's late.", "I will not go, it is late."),
    ("The colour of the theatre.", "The color of the theater."),
    ("Dr. Smith met Mr. Jones at 5 p.m.", "Doctor Smith met Mister Jones at five PM"),
    ("Don’t touch that wire!", "Don't touch that wire."),
])
def test_formatting_is_not_an_error(ref, hyp):
    er = error_rates(ref, hyp)
    assert er.wer == 0.0, (normalize(ref), normalize(hyp))
    assert er.cer == 0.0


def test_real_errors_count():
    er = error_rates("the quick brown fox jumps over the lazy dog", "the quick brown box jumps over a lazy dog")
    assert er.errors == 2 and er.wer == pytest.approx(2 / 9)
    assert er.cer == pytest.approx(4 / 35)  # f->b, "the"->"a" over 35 letters
    assert error_rates("hello world", "").wer == 1.0
    assert error_rates("hello world", "completely different words here yes").wer > 1.0
    assert error_rates("", "").wer == 0.0 and error_rates("!!!", "words").wer == 1.0


def test_normalizer_never_raises_and_is_idempotent_on_common_text():
    for s in ["", "   ", "¿Qué?", "a.b.c.", "$", "1/0", "€", "point point", "double", "and a half",
              "١٢٣", "🙂 emoji", "x" * 3000, "1e400", "minus minus 5"]:
        out = normalize(s)
        assert isinstance(out, str)
    assert normalize(normalize("Twenty-five cats, 3rd place.")) == normalize("Twenty-five cats, 3rd place.")


def _dp(a, b) -> int:
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
        prev = cur
    return prev[-1]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdé ", max_size=90), st.text(alphabet="abcdé ", max_size=90))
def test_bit_parallel_levenshtein_matches_dynamic_programming(a, b):
    assert levenshtein(a, b) == _dp(a, b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "ab", "ba", "c", "abc"]), max_size=12),
       st.lists(st.sampled_from(["a", "b", "ab", "bc", "c", "abc"]), max_size=12))
def test_word_errors_bounded_by_plain_edit_distance(ref, hyp):
    e = word_errors(ref, hyp)
    assert 0 <= e <= _dp(ref, hyp)
    assert word_errors(ref, ref) == 0


def test_relatedness_tells_a_misheard_prompt_from_another_sentence():
    from audiosubnet.scoring.wer import relatedness

    prompt = "The old lighthouse keeper counted forty two ships before the storm arrived."
    assert relatedness(prompt, prompt) == 1.0
    # a weak ASR on a robotic voice: WER 0.55, but it is this sentence
    misheard = "the old light house keeper counter forty to ships be for the storm arrive"
    assert error_rates(prompt, misheard).wer > 0.5 and relatedness(prompt, misheard) >= 0.5
    # another sentence, read perfectly: shares only function words
    other = "Bananas are an excellent source of potassium and fibre for the hungry hikers."
    assert relatedness(prompt, other) < 0.15
    assert relatedness(prompt, "") == 0.0
    # each transcript word matches once: repeating one prompt word does not make the rest appear
    assert relatedness(prompt, "storm storm storm storm storm storm storm storm") < 0.15
