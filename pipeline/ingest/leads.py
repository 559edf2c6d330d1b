"""Lead ingestion: read a CRM export (CSV or JSON Lines) into validated lead records.

A file either fails as a whole (:class:`LeadFileError`: binary, empty, header only, no usable
column) or yields a :class:`ParseResult` of good leads plus row-level rejects. Cell text is data:
it is kept and normalised, never interpreted.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Final, TextIO, TypeVar

from pipeline.ingest.fields import (
    ALIAS_INDEX,
    MAX_CELL_CHARS,
    MAX_FIELD_CHARS,
    MAX_NOTES_CHARS,
    CurrencyError,
    FieldError,
    company_domain,
    company_from_domain,
    identity_hash,
    normalise_country,
    normalise_email,
    normalise_header,
    normalise_website,
    parse_employees,
    parse_revenue,
    quote,
    split_tech_stack,
    website_domain,
)

_SNIFF_CHARS: Final = 8192
_DELIMITERS: Final = ",;\t"
_EXTENSIONS: Final = dict.fromkeys((".csv", ".tsv", ".txt"), "csv") | dict.fromkeys(
    (".jsonl", ".ndjson", ".json"), "jsonl"
)


class LeadFormat(StrEnum):
    """File formats :func:`parse_lead_text` understands."""

    CSV = "csv"
    JSONL = "jsonl"


class LeadFileError(Exception):
    """The file itself is unusable; ``str(exc)`` is a one-line "<source>: <reason>"."""


@dataclass(frozen=True, slots=True)
class LeadRecord:
    """One validated lead.

    Attributes:
        row: The 1-based line where the row starts (CSV header is line 1; JSONL line number).
        website: ``scheme://host/path`` with "https://" added when missing; None if absent.
        email: Lower-cased. employees/revenue_usd: see ``pipeline.ingest.fields`` for the rules.
        country: ISO alpha-2 when recognised, else the text as given.
        raw: Every column of the original row (header -> cell text), unmapped ones included.
        content_hash: SHA-256 of the identity (email, else company + website host).
    """

    row: int
    company: str
    website: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    title: str | None
    industry: str | None
    employees: int | None
    revenue_usd: Decimal | None
    country: str | None
    tech_stack: tuple[str, ...]
    notes: str | None
    raw: dict[str, str]
    content_hash: str


@dataclass(frozen=True, slots=True)
class Reject:
    """A row that was not turned into a lead, with a short human reason."""

    row: int
    reason: str


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Good leads in file order and rejects (bad rows and duplicates) sorted by row."""

    leads: list[LeadRecord]
    rejects: list[Reject]
    format: str
    warnings: list[Reject] = field(default_factory=list)
    """Kept rows with something the user should look at (derived company, cut notes, ...)."""


MAX_FILE_BYTES = 50_000_000
"""Lead files above 50 MB (about 200,000 CRM rows) are refused: split them into batches."""
_READ_CHUNK = 1 << 20


def parse_lead_file(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> ParseResult:
    """Read and validate a lead file; the format comes from the extension or the content.

    Every good lead is kept in memory: for large files iterate :func:`open_lead_file` instead.

    Args:
        path: A CSV (comma, semicolon or tab) or JSON Lines file, UTF-8 (BOM optional) or cp1252.
        max_bytes: Larger files (or endless ones such as ``/dev/zero``) are refused.

    Returns:
        The good leads and the rejected rows.

    Raises:
        LeadFileError: The file cannot be read, is too large or is unusable as a whole.
    """
    return open_lead_file(path, max_bytes=max_bytes).collect()


def open_lead_file(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> LeadStream:
    """Check a lead file as a whole and return a stream of its leads, read row by row.

    A regular file is read twice: once in 1 MB chunks for its size, SHA-256, encoding and a
    sample (memory stays bounded whatever its size), then row by row while iterating. A pipe or
    device can be read once only: its bytes (at most ``max_bytes``) are kept in memory.

    Raises:
        LeadFileError: The file cannot be read, is too large, binary, empty or of no known format
            (row-level problems are rejects; a malformed CSV is raised while iterating).
    """
    source = str(path)
    try:
        if not path.is_file():
            data = _read_bounded(path, max_bytes, source)
            return LeadStream.from_text(
                _decode(data, source), source=source, sha256=hashlib.sha256(data).hexdigest()
            )
        scan = _scan(path, max_bytes, source)
    except OSError as exc:
        raise _file_error(source, f"cannot read file ({exc.strerror or exc})") from None
    fmt = _checked_format(scan.sample, scan.has_text, source, None)
    encoding = scan.encoding

    def opener(newline: str) -> TextIO:
        return path.open(encoding=encoding, newline=newline)

    return LeadStream(
        source=source,
        fmt=fmt,
        sample=scan.sample,
        opener=opener,
        sha256=scan.sha256,
        field_limit=max_bytes + 1,
    )


def parse_lead_text(text: str, *, source: str, fmt: str | None = None) -> ParseResult:
    """Validate already-decoded lead text.

    Args:
        text: The whole file content.
        source: A name for messages (usually the path); its extension guides format detection.
        fmt: "csv" or "jsonl"; None detects from ``source``'s extension, then from the content.

    Returns:
        The good leads and the rejected rows.

    Raises:
        LeadFileError: The text is empty, binary, header-only or has no usable column.
        ValueError: ``fmt`` is not "csv", "jsonl" or None.
    """
    return LeadStream.from_text(text, source=source, fmt=fmt).collect()


_SAMPLE_CHARS: Final = 1 << 16
"""Decoded text kept from a file's start to detect its format, delimiter and binary content."""


class LeadStream:
    """The good leads of one lead file, built one row at a time (bounded memory).

    Iterate it once. Rows rejected on the way and warnings are collected in ``rejects`` and
    ``warnings`` (the rejects sorted by row once the iteration ends); ``accepted`` counts the
    leads yielded. Duplicates are recognised by identity hash, so only the hashes are kept for the
    whole file. Iterating may raise :class:`LeadFileError` for a problem seen only on the way (a
    malformed CSV line, a header-only file, JSON Lines without a usable key).
    """

    def __init__(
        self,
        *,
        source: str,
        fmt: LeadFormat,
        sample: str,
        opener: Callable[[str], TextIO],
        sha256: str | None,
        field_limit: int,
    ) -> None:
        self.source = source
        self.format = fmt
        self.sha256 = sha256
        """SHA-256 of the file's bytes (None for text handed in directly)."""
        self.rejects: list[Reject] = []
        self.warnings: list[Reject] = []
        self.accepted = 0
        self._sample = sample
        self._opener = opener
        self._field_limit = field_limit
        self._started = False

    @classmethod
    def from_text(
        cls, text: str, *, source: str, fmt: str | None = None, sha256: str | None = None
    ) -> LeadStream:
        """A stream over already-decoded text (see :func:`parse_lead_text`)."""
        text = text.removeprefix("\ufeff")
        sample = text[:_SAMPLE_CHARS]
        chosen = _checked_format(sample, bool(text.strip()), source, fmt)

        def opener(newline: str) -> TextIO:
            return io.StringIO(text, newline=newline)

        return cls(
            source=source,
            fmt=chosen,
            sample=sample,
            opener=opener,
            sha256=sha256,
            field_limit=len(text) + 1,
        )

    def __iter__(self) -> Iterator[LeadRecord]:
        if self._started:
            raise RuntimeError(f"{self.source}: a lead stream is read once")
        self._started = True
        csv_format = self.format is LeadFormat.CSV
        with self._opener("" if csv_format else "\n") as handle:
            if csv_format:
                rows = _csv_rows(handle, self._sample, self.source, self.rejects, self._field_limit)
            else:
                rows = _jsonl_rows(handle, self.source, self.rejects)
            yield from self._validate(rows)
        self.rejects.sort(key=lambda r: r.row)

    def collect(self) -> ParseResult:
        """Read every row: the good leads in file order and the rejects sorted by row."""
        leads = list(self)
        return ParseResult(
            leads=leads, rejects=self.rejects, format=self.format, warnings=self.warnings
        )

    def _validate(self, rows: Iterable[_Row]) -> Iterator[LeadRecord]:
        first_row: dict[str, int] = {}
        for row, pairs in rows:
            notes: list[str] = []
            try:
                lead = _build_lead(row, pairs, notes)
            except FieldError as exc:
                self.rejects.append(Reject(row, str(exc)))
                continue
            if lead.content_hash in first_row:
                self.rejects.append(Reject(row, f"duplicate of row {first_row[lead.content_hash]}"))
                continue
            first_row[lead.content_hash] = row
            self.accepted += 1
            self.warnings.extend(Reject(row, note) for note in notes)
            yield lead


def _checked_format(sample: str, has_text: bool, source: str, fmt: str | None) -> LeadFormat:
    """The whole-file checks on a file's start: empty, binary, which format, a JSON array."""
    if not has_text:
        raise _file_error(source, "file is empty")
    if _looks_binary(sample):
        raise _file_error(source, "file looks binary, not text")
    chosen = LeadFormat(fmt.lower()) if fmt is not None else _detect_format(sample, source)
    if chosen is LeadFormat.JSONL and sample.lstrip().startswith("["):
        raise _file_error(source, "a JSON array is not JSON Lines; write one object per line")
    return chosen


@dataclass(frozen=True, slots=True)
class _Scan:
    encoding: str
    sha256: str
    sample: str
    has_text: bool


class _TextCheck:
    """Decodes chunks incrementally: is it valid text, and is there more than whitespace."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self.sample = ""
        self.has_text = False
        self.failed = False

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        if self.failed:
            return
        try:
            text = self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError:
            self.failed = True
            return
        if len(self.sample) < _SAMPLE_CHARS:
            self.sample += text[: _SAMPLE_CHARS - len(self.sample)]
        if not self.has_text and text and not text.isspace():
            self.has_text = True


def _scan(path: Path, max_bytes: int, source: str) -> _Scan:
    """One bounded pass over a regular file: size cap, NUL sniff, SHA-256, encoding, sample.

    The rules of :func:`_read_bounded` then :func:`_decode`, without keeping the bytes.
    """
    digest = hashlib.sha256()
    check = _TextCheck("utf-8-sig")
    total = 0
    with path.open("rb") as handle:
        while chunk := handle.read(min(_READ_CHUNK, max_bytes + 1 - total)):
            if total == 0:
                if b"\x00" in chunk[: _SNIFF_CHARS * 4] and not _utf16_bom(chunk):
                    raise _file_error(source, "file looks binary (contains NUL bytes)")
                if _utf16_bom(chunk):
                    check = _TextCheck("utf-16")
            total += len(chunk)
            if total > max_bytes:
                raise _file_error(
                    source, f"file is larger than {max_bytes // 1_000_000} MB; split it"
                )
            digest.update(chunk)
            check.feed(chunk)
    check.feed(b"", final=True)
    if check.failed and check.encoding == "utf-16":
        raise _file_error(source, "file looks binary (bad UTF-16)")
    if check.failed:
        check = _TextCheck("cp1252")
        with path.open("rb") as handle:
            while chunk := handle.read(_READ_CHUNK):
                check.feed(chunk)
        check.feed(b"", final=True)
        if check.failed:
            raise _file_error(source, "file looks binary (neither UTF-8 nor cp1252 text)")
    return _Scan(check.encoding, digest.hexdigest(), check.sample, check.has_text)


def _read_bounded(path: Path, max_bytes: int, source: str) -> bytes:
    """The file's bytes, read in chunks and never more than ``max_bytes`` (+1 to notice more).

    A device or pipe has no size to check up front, and a binary one is refused on its first
    chunk instead of after the cap.
    """
    chunks: list[bytes] = []
    total = 0
    with path.open("rb") as handle:
        while chunk := handle.read(min(_READ_CHUNK, max_bytes + 1 - total)):
            if not chunks and b"\x00" in chunk[: _SNIFF_CHARS * 4] and not _utf16_bom(chunk):
                raise _file_error(source, "file looks binary (contains NUL bytes)")
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise _file_error(
                    source, f"file is larger than {max_bytes // 1_000_000} MB; split it"
                )
    return b"".join(chunks)


def _utf16_bom(data: bytes) -> bool:
    return data.startswith((b"\xff\xfe", b"\xfe\xff"))


def _file_error(source: str, reason: str) -> LeadFileError:
    return LeadFileError(" ".join(f"{source}: {reason}".split()))


def _decode(data: bytes, source: str) -> str:
    """UTF-8 (BOM optional), UTF-16 with a BOM, else cp1252 as Excel writes it."""
    if _utf16_bom(data):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise _file_error(source, "file looks binary (bad UTF-16)") from None
    sample = data[: _SNIFF_CHARS * 4]
    if sample.count(b"\x00") * 100 > len(sample):  # a stray NUL in a cell only rejects its row
        raise _file_error(source, "file looks binary (contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        why = "contains NUL bytes" if b"\x00" in sample else "neither UTF-8 nor cp1252 text"
        raise _file_error(source, f"file looks binary ({why})") from None


def _looks_binary(text: str) -> bool:
    sample = text[:_SNIFF_CHARS]
    controls = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f")
    return controls > len(sample) * 0.05


def _detect_format(text: str, source: str) -> LeadFormat:
    suffix = PurePath(source).suffix.lower()
    if suffix in _EXTENSIONS:
        return LeadFormat(_EXTENSIONS[suffix])
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return LeadFormat.JSONL
    first_line = stripped.split("\n", 1)[0]
    if any(d in first_line for d in _DELIMITERS) or normalise_header(first_line) in ALIAS_INDEX:
        return LeadFormat.CSV
    raise _file_error(source, f"cannot tell the format of a '{suffix}' file; use .csv or .jsonl")


_T = TypeVar("_T")

# A row as read: (line number, [(column name, cell text), ...]).
_Row = tuple[int, list[tuple[str, str]]]


def _detect_delimiter(text: str) -> str:
    """csv.Sniffer on the first few KB, checked against (or replaced by) the header line."""
    sample = text[:_SNIFF_CHARS]
    header = text.lstrip("\r\n").split("\n", 1)[0]
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        sniffed = ""
    if sniffed and sniffed in header:
        return sniffed
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _unique_names(header: list[str]) -> list[str]:
    names: list[str] = []
    for index, cell in enumerate(header):
        name = cell.strip() or f"column_{index + 1}"
        while name in names:  # raw must keep every column even when a header repeats
            name += f" ({index + 1})"
        names.append(name)
    return names


def _csv_rows(
    handle: TextIO, sample: str, source: str, rejects: list[Reject], field_limit: int
) -> Iterator[_Row]:
    # Python's default (128 KiB) makes one huge cell a file error; _pick_fields rejects its row.
    csv.field_size_limit(max(csv.field_size_limit(), field_limit))
    reader = csv.reader(handle, delimiter=_detect_delimiter(sample))
    names: list[str] | None = None
    seen_rows = False
    end_of_previous = 0
    try:
        for cells in reader:
            # line_num is where the row ENDS; a quoted field may span lines, so the row starts
            # on the line after the previous row ended.
            start, end_of_previous = end_of_previous + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if names is None:
                names = _unique_names(cells)
                _require_usable(names, source)
            elif len(cells) > len(names) and any(c.strip() for c in cells[len(names) :]):
                rejects.append(Reject(start, f"{len(cells)} fields, header has {len(names)}"))
            else:
                padded = cells + [""] * (len(names) - len(cells))
                seen_rows = True
                yield (start, list(zip(names, padded, strict=False)))
    except csv.Error as exc:
        raise _file_error(source, f"malformed CSV near line {reader.line_num}: {exc}") from None
    if not seen_rows and not rejects:
        raise _file_error(source, "no data rows (header only)")


def _require_usable(names: Iterable[str], source: str) -> None:
    names = list(names)
    fields = {ALIAS_INDEX[key][0] for key in map(normalise_header, names) if key in ALIAS_INDEX}
    if not fields & {"company", "email", "website"}:
        shown = ", ".join(names[:15]) + (", …" if len(names) > 15 else "")
        raise _file_error(
            source, f"no usable column (need a company, website or email column); saw: {shown}"
        )


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(_cell_text(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _jsonl_rows(handle: TextIO, source: str, rejects: list[Reject]) -> Iterator[_Row]:
    """One row per line; a line ends at "\\n" only (U+2028 and friends are legal in strings)."""
    keys: dict[str, None] = {}
    seen_rows = False
    for number, text_line in enumerate(handle, start=1):
        line = text_line.removesuffix("\n")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            rejects.append(Reject(number, f"invalid JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(obj, dict):
            rejects.append(Reject(number, f"invalid JSON: expected an object, got {_kind(obj)}"))
            continue
        keys.update(dict.fromkeys(obj))
        pairs = [(str(key), _cell_text(value)) for key, value in obj.items()]
        if any(value.strip() for _, value in pairs):
            seen_rows = True
            yield (number, pairs)
    if seen_rows:
        _require_usable(keys, source)
    elif not rejects:
        raise _file_error(source, "no data rows (every object is empty)")


def _kind(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


@functools.lru_cache(maxsize=4096)
def _field_of(name: str) -> tuple[str, int] | None:
    return ALIAS_INDEX.get(normalise_header(name))


def _pick_fields(pairs: list[tuple[str, str]], notes: list[str]) -> dict[str, str]:
    """Canonical field -> stripped text, taking the most preferred non-empty column.

    A NUL byte or a cell over ``MAX_CELL_CHARS`` in any column rejects the row; notes over
    ``MAX_NOTES_CHARS`` are cut (noted in ``notes``); other fields over ``MAX_FIELD_CHARS`` reject.
    """
    chosen: dict[str, tuple[int, str]] = {}
    for name, value in pairs:
        if "\x00" in value:
            raise FieldError(f"column {quote(name, 30)} contains a NUL byte")
        if len(value) > MAX_CELL_CHARS:
            raise FieldError(f"column {quote(name, 30)} too large ({len(value)} chars)")
        mapped = _field_of(name)
        text = value.strip()
        if mapped is None or not text:
            continue
        field_name, rank = mapped
        if field_name not in chosen or rank < chosen[field_name][0]:
            chosen[field_name] = (rank, text)
    picked = {field_name: text for field_name, (_, text) in chosen.items()}
    if len(picked.get("notes", "")) > MAX_NOTES_CHARS:
        notes.append(f"notes cut from {len(picked['notes'])} to {MAX_NOTES_CHARS} chars")
        picked["notes"] = picked["notes"][:MAX_NOTES_CHARS]
    for field_name, text in picked.items():
        if len(text) > MAX_FIELD_CHARS:
            raise FieldError(f"field '{field_name}' too long ({len(text)} chars)")
    return picked


def _line(text: str | None) -> str | None:
    """A single-line text field: NFC, whitespace runs collapsed, None when blank."""
    if text is None:
        return None
    return " ".join(unicodedata.normalize("NFC", text).split()) or None


def _optional(text: str | None, parse: Callable[[str], _T]) -> _T | None:
    return None if text is None else parse(text)


FORMULA_START: Final = ("=", "+", "-", "@")
_NAME_FIELDS: Final = ("company", "first_name", "last_name", "title")


def _company(
    fields: dict[str, str], email: str | None, website: str | None, notes: list[str]
) -> str:
    """The company name, else one derived from the website or a work email's domain."""
    company = _line(fields.get("company"))
    if company is not None:
        return company
    domain = website_domain(website) or company_domain(email)
    if domain is None:
        raise FieldError("missing company name")
    derived = company_from_domain(domain)
    notes.append(f"company name {derived!r} derived from {domain}")
    return derived


def _revenue(text: str | None, notes: list[str]) -> Decimal | None:
    """Revenue in dollars; another currency drops the field with a note, not the row."""
    try:
        return _optional(text, parse_revenue)
    except CurrencyError as exc:
        notes.append(f"{exc}; revenue ignored")
        return None


def _flag_formulas(fields: dict[str, str], notes: list[str]) -> None:
    """Note name fields a spreadsheet would run as a formula (exports neutralise them)."""
    for name in _NAME_FIELDS:
        if fields.get(name, "").startswith(FORMULA_START):
            notes.append(f"{name} {quote(fields[name], 40)} looks like a spreadsheet formula")


def _build_lead(row: int, pairs: list[tuple[str, str]], notes: list[str]) -> LeadRecord:
    fields = _pick_fields(pairs, notes)
    try:
        email = _optional(fields.get("email"), normalise_email)
        website = _optional(fields.get("website"), normalise_website)
    except FieldError:
        if _line(fields.get("company")) is None:  # nothing to name the lead by
            raise FieldError("missing company name") from None
        raise
    company = _company(fields, email, website, notes)
    _flag_formulas(fields, notes)
    text_notes = fields.get("notes")
    return LeadRecord(
        row=row,
        company=company,
        website=website,
        email=email,
        first_name=_line(fields.get("first_name")),
        last_name=_line(fields.get("last_name")),
        title=_line(fields.get("title")),
        industry=_line(fields.get("industry")),
        employees=_optional(fields.get("employees"), parse_employees),
        revenue_usd=_revenue(fields.get("revenue"), notes),
        country=_optional(_line(fields.get("country")), normalise_country),
        tech_stack=split_tech_stack(fields.get("tech_stack", "")),
        notes=unicodedata.normalize("NFC", text_notes) if text_notes else None,
        raw=dict(pairs),
        content_hash=identity_hash(company=company, email=email, website=website),
    )
