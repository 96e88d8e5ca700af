"""The prompts file of `asn tts batch` (and `asn validate --prompts`): a CSV with a `text` column, or
one prompt per line.

- The delimiter is sniffed from the header line: `,`, `;`, tab or `|`, whichever makes a `text`
  column (so a spreadsheet's semicolon export works). Quoting follows the CSV rules.
- Without a `text` header every non-empty line is one prompt, commas and all (a line that is one
  quoted CSV field is unquoted). When the first line looks like the header of a table that has no
  `text` column (`id,prompt`), the file is refused with a clear error instead of being read aloud.
- A file that is not text (NUL bytes, audio/archive signatures, mostly undecodable bytes) is one
  error, never a row per line of garbage.
- When `text` is the last column, a row with more fields than the header had an unquoted delimiter
  in its text: the extra fields are the rest of the text.
- File-level problems raise UsageError (exit 2); problems of one row mark that row.

The same reading (decoding, binary refusal, delimiter sniffing, one prompt per line, safe unique ids) serves
every batch job: `parse_table(raw, what, column)` names the job's text column (`asn music batch` reads
`prompt`), `PromptTable` reads a record's fields, `settle_ids` makes ids safe file names.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from audiosubnet.errors import UsageError

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DELIMITERS = (",", ";", "\t", "|")
KNOWN_COLUMNS = {"id", "text", "model", "voice", "speed"}
_HEADER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,31}$")
#: signatures of common binary files people pass by mistake
_MAGIC = {b"RIFF": "a WAV/RIFF file", b"fLaC": "a FLAC file", b"OggS": "an Ogg file", b"ID3": "an MP3 file",
          b"PK\x03\x04": "a zip archive (an .xlsx workbook?)", b"%PDF": "a PDF", b"\x89PNG": "a PNG image",
          b"\xd0\xcf\x11\xe0": "an old Office document (.xls?)", b"\x1f\x8b": "a gzip file",
          b"\x7fELF": "a program"}


def _fix(column: str) -> str:
    return f"Save it as a UTF-8 CSV with a '{column}' column, or as plain text with one prompt per line."


@dataclass
class PromptRow:
    number: int  # data row number, 1-based (used for default ids and messages)
    line: int  # line in the file
    id: str
    text: str = ""
    model: str | None = None
    voice: str | None = None
    speed: float = 1.0
    error: str | None = None


def has_bad_utf8(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


@dataclass(frozen=True)
class PromptTable:
    """A prompts file read as a table: lower-cased header names and the data records (line, fields)."""

    header: list[str]
    records: list[tuple[int, list[str]]]
    delimiter: str = ","
    header_text: str = "text"  # the job's text column

    def fields(self, fields: list[str]) -> list[str]:
        """A record's fields; when the text column is last, extra fields are the rest of its text (an
        unquoted delimiter)."""
        n = len(self.header)
        if len(fields) > n and self.header[-1] == self.header_text:
            return [*fields[:n - 1], self.delimiter.join(fields[n - 1:])]
        return fields

    def getter(self, fields: list[str]) -> Callable[[str], str]:
        col = {name: i for i, name in enumerate(self.header) if name}

        def get(name: str) -> str:
            i = col.get(name)
            return fields[i].strip() if i is not None and i < len(fields) else ""

        return get

    def shape_error(self, line: int, fields: list[str]) -> str | None:
        """Why a record cannot be read at all (wrong column count, invalid UTF-8), or None."""
        if len(fields) != len(self.header):
            shown = "tab" if self.delimiter == "\t" else f"'{self.delimiter}'"
            return (f"line {line}: {len(fields)} columns where the header has {len(self.header)} "
                    f"(quote a {self.header_text} that contains {shown})")
        if any(has_bad_utf8(f) for f in fields):
            return f"line {line}: invalid UTF-8"
        return None


def read_source(path: Path, column: str = "text") -> bytes:
    """A prompts file's bytes; a missing or unreadable file is a UsageError."""
    hint = f"Pass a CSV with a '{column}' column."
    if not path.exists():
        raise UsageError(f"prompts file {path} does not exist", hint=hint)
    if not path.is_file():
        raise UsageError(f"{path} is not a file", hint=hint)
    try:
        return path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from e


def read_prompts(path: Path) -> list[PromptRow]:
    """Parse a prompts file. File-level problems raise UsageError; row problems mark the row."""
    return parse_prompts(read_source(path), f"prompts file {path}")


def parse_prompts(raw: bytes, what: str = "the prompts") -> list[PromptRow]:
    """Parse prompts from bytes (a file's or stdin's); `what` names the source in messages."""
    return settle_ids(_rows(parse_table(raw, what)))


def parse_table(raw: bytes, what: str, column: str = "text", known: set[str] = KNOWN_COLUMNS) -> PromptTable:
    """The table of a prompts file whose text column is `column` (`known`: the job's column names, which
    mark a first line as a header). File-level problems raise UsageError."""
    content = decode(raw, what, column)
    lines = re.split(r"\r\n|\r|\n", content)
    first_i = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first_i is None:
        raise UsageError(f"{what} is empty", hint=f"Add a header line '{column}' and one prompt per row.")
    first = lines[first_i]
    delimiter = _header_delimiter(first, column)
    if delimiter is not None:
        header, records = _table(content, delimiter, what, column)
        return PromptTable(header, records, delimiter, column)
    if first.strip().lower() == column:  # a one-column table: every later line is one prompt
        records = _lines(lines[first_i + 1:], offset=first_i + 2)
        if not records:
            raise UsageError(f"{what} has a header but no rows")
        return PromptTable([column], records, ",", column)
    _refuse_headerlike(lines, first_i, what, column, known)
    return PromptTable([column], _lines(lines, offset=1), ",", column)


def decode(raw: bytes, what: str, column: str = "text") -> str:
    """A prompts file's text; a file that is not text (binary, NUL bytes, mostly undecodable) is a UsageError."""
    fix = _fix(column)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a BOM (Excel's "Unicode text")
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise UsageError(f"{what} is not valid UTF-16 text", hint=fix) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise UsageError(f"{what} is empty", hint=f"Add a header line '{column}' and one prompt per row.")
    for magic, kind in _MAGIC.items():
        if raw.startswith(magic):
            raise UsageError(f"{what} is {kind}, not a text file", hint=fix)
    head = raw[:65536]
    if b"\x00" in head:
        raise UsageError(f"{what} is not a text file (it contains NUL bytes)", hint=fix)
    content = raw.decode("utf-8", errors="surrogateescape")
    sample = content[:65536]
    bad = sum(1 for ch in sample if ("\udc80" <= ch <= "\udcff") or (ord(ch) < 32 and ch not in "\t\n\r\f\v"))
    if bad >= 8 and bad > len(sample) * 0.01:
        raise UsageError(f"{what} is not UTF-8 text ({bad} undecodable or control bytes in its first "
                         f"{len(sample):,} characters)", hint=fix)
    return content


def _split(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []


def _header_delimiter(first: str, column: str) -> str | None:
    """The delimiter under which the first line is a header with a `column` column and other columns."""
    found = [d for d in DELIMITERS if len(f := _split(first, d)) > 1 and column in (x.strip().lower() for x in f)]
    return found[0] if found else None


def _refuse_headerlike(lines: list[str], first_i: int, what: str, column: str, known: set[str]) -> None:
    """Headerless files are one prompt per line, except when line 1 is plainly a table's header."""
    first = lines[first_i]
    rest = [line for line in lines[first_i + 1:] if line.strip()]
    for d in DELIMITERS:
        names = [x.strip() for x in _split(first, d)]
        if len(names) < 2 or not all(_HEADER_NAME.match(n) for n in names):
            continue
        named = known & {n.lower() for n in names}
        same_shape = rest and sum(len(_split(line, d)) == len(names) for line in rest) >= 0.8 * len(rest)
        if named or same_shape:
            raise UsageError(
                f"{what}: cannot tell whether line {first_i + 1} ({', '.join(names)}) is the header of a table "
                f"without a '{column}' column or a prompt",
                hint=f"Name the column with the words '{column}' (e.g. id,{column}), or start the file with a line "
                     f"'{column}' to mean one prompt per line.")


def _lines(lines: list[str], offset: int) -> list[tuple[int, list[str]]]:
    """One prompt per line, the whole line; a line that is exactly one quoted CSV field is unquoted."""
    out = []
    for n, line in enumerate(lines):
        s = line.strip()
        if not s:
            continue
        if len(s) >= 2 and s[0] == s[-1] == '"':
            fields = _split(s, "\x1f")
            if len(fields) == 1:
                s = fields[0]
        out.append((n + offset, [s]))
    return out


def _table(content: str, delimiter: str, what: str, column: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    records: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            if not fields or all(not f.strip() for f in fields):
                continue
            records.append((reader.line_num, fields))
    except csv.Error as e:
        raise UsageError(f"{what}: line {reader.line_num}: {e}", hint=_fix(column)) from e
    header = [f.strip().lower() for f in records[0][1]]
    if len(records) < 2:
        raise UsageError(f"{what} has a header but no rows")
    return header, records[1:]


def _rows(table: PromptTable) -> list[PromptRow]:
    rows: list[PromptRow] = []
    for row, get in fill_rows(table, lambda n, line: PromptRow(number=n, line=line, id=f"{n:04d}"), rows):
        line = row.line
        row.text = " ".join(get("text").split())
        row.model = get("model") or None
        row.voice = get("voice") or None
        speed = get("speed")
        if speed:
            try:
                row.speed = float(speed)
            except ValueError:
                row.error = f"line {line}: speed '{speed}' is not a number"
        if not row.text and not row.error:
            row.error = f"line {line}: empty text"
    return rows


class _Row(Protocol):
    number: int
    line: int
    id: str
    error: str | None


_R = TypeVar("_R", bound=_Row)


def fill_rows(table: PromptTable, make: Callable[[int, int], _R],
              rows: list[_R]) -> Iterator[tuple[_R, Callable[[str], str]]]:
    """Each record of `table` as `make(number, line)` with its id (the `id` column, else the number) and shape
    error set, appended to `rows`; yields (row, column getter) for those without a shape error, whose other
    columns the caller parses (the speech and the music jobs)."""
    for n, (line, raw_fields) in enumerate(table.records, start=1):
        row = make(n, line)
        fields = table.fields(raw_fields)
        get = table.getter(fields)
        if get("id"):
            row.id = get("id")
        row.error = table.shape_error(line, fields)
        rows.append(row)
        if not row.error:
            yield row, get


def settle_ids(rows: Sequence[_R]) -> list[_R]:
    """Make every id a safe file name and unique; a row whose id had to change is marked with the reason."""
    seen: set[str] = set()
    for row in rows:
        if has_bad_utf8(row.id):
            row.id = row.id.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if not ID_RE.match(row.id):
            bad = row.id
            row.id = f"row{row.number:04d}"
            row.error = row.error or f"line {row.line}: id '{bad}' is not a safe file name (letters, digits, . _ -)"
        elif row.id in seen:
            dup = row.id
            row.id = f"{dup}~row{row.number}"
            row.error = row.error or f"line {row.line}: duplicate id '{dup}'"
        seen.add(row.id)
    return list(rows)
