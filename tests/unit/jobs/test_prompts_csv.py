"""The prompts file: delimiter sniffing, whole-line prompts, a clear error when it is ambiguous or not text."""

from __future__ import annotations

import pytest

from audiosubnet import audio
from audiosubnet.errors import UsageError
from audiosubnet.jobs.prompts_csv import parse_prompts


def texts(raw: bytes | str) -> list[str]:
    rows = parse_prompts(raw.encode() if isinstance(raw, str) else raw)
    assert all(r.error is None for r in rows), [r.error for r in rows]
    return [r.text for r in rows]


def test_headerless_lines_are_whole_prompts_commas_and_all():
    raw = "Hello, world.\nYes, please, two coffees; no sugar.\n\n\"Quoted, as a CSV field.\"\nShe said \"hi\", then left.\n"
    assert texts(raw) == ["Hello, world.", "Yes, please, two coffees; no sugar.", "Quoted, as a CSV field.",
                          'She said "hi", then left.']


def test_a_text_header_alone_means_one_prompt_per_line():
    rows = parse_prompts(b"text\nOne, two, three.\nFour; five.\n")
    assert [(r.id, r.text, r.line) for r in rows] == [("0001", "One, two, three.", 2), ("0002", "Four; five.", 3)]


@pytest.mark.parametrize("sep", [";", "\t", "|", ","])
def test_the_delimiter_is_sniffed_from_the_header(sep):
    raw = f"id{sep}text{sep}speed\nhello{sep}\"Hello{sep} there.\"{sep}1.5\nbye{sep}Bye now.{sep}\n"
    rows = parse_prompts(raw.encode())
    said = " ".join(f"Hello{sep} there.".split())  # whitespace (a tab too) is collapsed
    assert [(r.id, r.text, r.speed) for r in rows] == [("hello", said, 1.5), ("bye", "Bye now.", 1.0)]


def test_semicolon_file_with_commas_in_the_text():
    rows = parse_prompts("id;text\nmoney;Tickets cost $12,50, or €40.\n".encode())
    assert [(r.id, r.text) for r in rows] == [("money", "Tickets cost $12,50, or €40.")]


@pytest.mark.parametrize("raw", [b"a,b\nc,d\ne,f\n", b"id,prompt\n1,Hello there.\n", b"name;sentence;voice\nx;y;z\n"])
def test_a_table_without_a_text_column_is_refused_not_read_aloud(raw):
    with pytest.raises(UsageError, match="header of a table without a 'text' column") as e:
        parse_prompts(raw)
    assert e.value.exit_code == 2 and "'text'" in e.value.hint


def test_an_unquoted_delimiter_in_a_last_text_column_is_part_of_the_text():
    rows = parse_prompts(b"id,text\na,Hello, world, again.\nb,Fine.\n")
    assert [(r.id, r.text, r.error) for r in rows] == [("a", "Hello, world, again.", None), ("b", "Fine.", None)]


def test_wrong_field_count_names_the_delimiter_to_quote():
    rows = parse_prompts(b"text;id\nFine.;a\nToo;many;b\n")
    assert rows[0].error is None
    assert "3 columns where the header has 2" in rows[1].error and "';'" in rows[1].error


@pytest.mark.parametrize("raw,what", [
    (audio.encode(audio.Audio([0.1] * 1600, 16000), "wav"), "WAV"),
    (b"PK\x03\x04" + bytes(200), "zip"),
    (bytes(range(256)) * 20, "NUL"),
    (b"\x01\x02\x03\x04\x05\x06\x07\x08hello\x0e\x0f\x10\x11\x12\x13\x14" * 50, "not UTF-8 text"),
])
def test_binary_is_one_error(raw, what):
    with pytest.raises(UsageError, match=what) as e:
        parse_prompts(raw, "prompts file x.csv")
    assert e.value.exit_code == 2


def test_a_stray_bad_byte_is_still_a_row_error():
    rows = parse_prompts(b"id,text\ngood,Fine.\nutf,\xff\xfe\n")
    assert rows[0].error is None and "invalid UTF-8" in rows[1].error


def test_utf16_with_bom():
    assert texts("text\nHéllo, wörld.\n".encode("utf-16")) == ["Héllo, wörld."]
