"""Reading the CSV files people bring: any common encoding and delimiter, streamed row by row.

Encodings: UTF-8 with or without a byte-order mark, UTF-16 with a BOM (Excel's "Unicode text"),
and Windows-1252 (older Excel and the older NUCC files). Delimiters: comma, semicolon, tab or pipe,
chosen from the header line. Rows are numbered as a spreadsheet shows them (the header is row 1).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

SAMPLE_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t", "|")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class InputRefused(ValueError):
    """The file as a whole cannot be used; nothing was written."""


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    reason: str


@dataclass
class CsvFile:
    """An open CSV file: its header and a row iterator (row number, values)."""

    name: str
    encoding: str
    delimiter: str
    header: list[str]
    size: int
    _binary: BinaryIO
    _reader: "csv._reader"
    _text: io.TextIOWrapper
    errors: list[RowError] = field(default_factory=list)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Data rows with their spreadsheet row number; a truncated or undecodable tail is
        recorded in ``errors`` (or refuses the file) instead of raising from the middle."""
        reader = self._reader
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                self.errors.append(
                    RowError(reader.line_num, "", f"unreadable row ({error}); the file may be truncated")
                )
                return
            except UnicodeDecodeError as error:
                raise InputRefused(
                    f"{self.name}: the file is not valid {self.encoding} near line {reader.line_num + 1} "
                    f"({error.reason}); save it again as UTF-8"
                ) from None
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            yield reader.line_num, values

    def bytes_read(self) -> int:
        try:
            return self._binary.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        self._text.close()


def normalise_header(name: str) -> str:
    """'First Name', 'first_name' and ' FIRST-NAME ' all become 'first name'."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", name.lower()).split())


def _is_utf8(sample: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(sample: bytes) -> tuple[str, int]:
    """The encoding of a file that starts with ``sample``, and how many leading bytes (a BOM)
    to skip. A UTF-8 BOM in front of Windows-1252 text (some tools add one blindly) is read as
    Windows-1252."""
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", 0
    skip = len(codecs.BOM_UTF8) if sample.startswith(codecs.BOM_UTF8) else 0
    if _is_utf8(sample[skip:]):
        return ("utf-8-sig" if skip else "utf-8"), 0
    try:
        sample[skip:].decode("cp1252")
    except UnicodeDecodeError:
        raise InputRefused("the file is neither UTF-8 nor Windows-1252 text") from None
    return "cp1252", skip


def _refuse_non_text(name: str, sample: bytes) -> None:
    if not sample.strip():
        raise InputRefused(f"{name}: the file is empty")
    if sample.startswith(b"PK\x03\x04"):
        raise InputRefused(f"{name}: this is an Excel workbook or a zip file; save it as CSV first")
    if sample.startswith(b"%PDF"):
        raise InputRefused(f"{name}: this is a PDF, not a CSV file")
    if b"\x00" in sample and not sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputRefused(f"{name}: this is a binary file, not CSV text")


def pick_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def open_csv(path: str | Path, *, display_name: str | None = None) -> CsvFile:
    """Open ``path`` for streaming; InputRefused names what is wrong with the file as a whole."""
    path = Path(path)
    name = display_name or path.name
    try:
        binary = path.open("rb")
    except OSError as error:
        raise InputRefused(f"{name}: cannot open the file ({error.strerror})") from None
    size = path.stat().st_size
    sample = binary.read(SAMPLE_BYTES)
    try:
        _refuse_non_text(name, sample)
        encoding, skip = detect_encoding(sample)
    except InputRefused as error:
        binary.close()
        raise InputRefused(str(error) if str(error).startswith(name) else f"{name}: {error}") from None
    binary.seek(skip)
    text = io.TextIOWrapper(binary, encoding=encoding, newline="")
    try:
        first_line = text.readline()
    except UnicodeDecodeError:
        text.close()
        raise InputRefused(f"{name}: the header line is not valid {encoding} text") from None
    delimiter = pick_delimiter(first_line)
    header = next(csv.reader([first_line], delimiter=delimiter), [])
    header = [column.strip().lstrip("\ufeff") for column in header]
    if not any(header):
        text.close()
        raise InputRefused(f"{name}: the first line holds no column names")
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    reader_line_offset = 1  # the header line was read before the reader started
    return CsvFile(
        name=name,
        encoding=encoding,
        delimiter=delimiter,
        header=header,
        size=size,
        _binary=binary,
        _reader=_Offset(reader, reader_line_offset),
        _text=text,
    )


class _Offset:
    """A csv reader whose ``line_num`` counts the header line read before it started."""

    def __init__(self, reader, offset: int) -> None:
        self._reader = reader
        self._offset = offset

    def __iter__(self):
        return self

    def __next__(self) -> list[str]:
        return next(self._reader)

    @property
    def line_num(self) -> int:
        return self._reader.line_num + self._offset


ProgressCallback = Callable[[int], None]
