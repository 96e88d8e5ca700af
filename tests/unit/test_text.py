"""The sentence splitter shared by `asn serve` streaming and long texts in `asn tts say/batch`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiosubnet.text import chunk_text, split_sentences


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello there. How are you? I'm fine!", ["Hello there.", "How are you?", "I'm fine!"]),
    ("Dr. Smith paid $3.50 for it. Then he left.", ["Dr. Smith paid $3.50 for it.", "Then he left."]),
    ("Mr. and Mrs. Jones met Prof. Lee.", ["Mr. and Mrs. Jones met Prof. Lee."]),
    ("J. R. R. Tolkien wrote it. It is long.", ["J. R. R. Tolkien wrote it.", "It is long."]),
    ("Bring fruit, e.g. apples. Or pears.", ["Bring fruit, e.g. apples.", "Or pears."]),
    ("Visit example.com today. Version 1.5.2 is out.", ["Visit example.com today.", "Version 1.5.2 is out."]),
    ('He said "Stop!" Then silence.', ['He said "Stop!"', "Then silence."]),
    ("Wait... what? Really?!", ["Wait...", "what?", "Really?!"]),
    ("Apples, pears, etc. are fruit.", ["Apples, pears, etc. are fruit."]),
    ("We left at 5 p.m. The bus was late.", ["We left at 5 p.m.", "The bus was late."]),
    ("今日は晴れです。明日は雨です！", ["今日は晴れです。", "明日は雨です！"]),
    ("Title line\n\nFirst paragraph", ["Title line", "First paragraph"]),
    ("no end punctuation", ["no end punctuation"]),
    ("  \n ", []),
    ("(He left.) She stayed.", ["(He left.)", "She stayed."]),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_chunk_text_cuts_long_sentences_at_clause_breaks_then_spaces():
    long = "one two three, " * 20 + "end."
    chunks = chunk_text(long, 60)
    assert all(len(c) <= 60 for c in chunks)
    assert all(c.endswith(",") for c in chunks[:-1])  # cut after a comma, not mid-clause
    assert " ".join(chunks).split() == long.split()
    words = "word " * 100
    assert all(len(c) <= 23 for c in chunk_text(words, 23))
    assert chunk_text("x" * 50, 20) == ["x" * 20, "x" * 20, "x" * 10]


def test_a_5000_character_text_is_split_into_pieces_under_the_limit():
    text = " ".join(f"Sentence number {i} is here, and it goes on for a while." for i in range(90))
    assert len(text) > 5000
    chunks = chunk_text(text, 400)
    assert len(chunks) == 90 and all(len(c) <= 400 for c in chunks)
    packed = chunk_text(text, 400, pack=True)
    assert len(packed) == 13 and all(len(c) <= 400 for c in packed) and " ".join(packed) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .,!?\n\"')e.gMrDr3")), max_size=300), st.integers(5, 80))
def test_chunking_keeps_every_word_and_respects_the_limit(text, max_chars):
    for pack in (False, True):
        chunks = chunk_text(text, max_chars, pack=pack)
        assert all(0 < len(c) <= max_chars for c in chunks)
        assert "".join("".join(chunks).split()) == "".join(text.split())
