"""Cell values: one CSV cell (a ``str``) to a typed, JSON-ready value for a form field.

Pure code, no I/O: the runner builds one parser per field with :func:`make_parser` and calls
it for every cell; a bad cell raises :class:`InvalidValue`, whose ``reason`` the runner
stores as a row error. Parsers keep no state between calls, so a resumed run reads every
value exactly as an uninterrupted one would.

Rules, per field type (``collect.form_fields.type``):

* Every cell: surrounding whitespace (any Unicode space, NBSP, zero-width space, BOM) is
  removed. What is left empty is blank: ``None``, or "required value is missing" when the
  field is required. Words such as ``NA`` or ``null`` are not blank (they can be real
  text). A cell of a typed field longer than :data:`MAX_CELL_LENGTH` allows for its type
  (100 characters for numbers, dates and datetimes, 64 for phones) is refused before it is
  read, so every cell takes time linear in its length.
* ``text``: ``str``, NFC-normalised (Unicode canonical composition, no change of meaning),
  internal line breaks kept and written as ``\\n``. A NUL character is refused (PostgreSQL
  cannot store it).
* ``integer``: ``int``. Digits with an optional sign; any Unicode decimal digits (``१२`` is
  12). Thousands separators are accepted when the groups are well formed: ``1,234,567``,
  Indian ``12,34,567``, ``1 234 567`` (space, NBSP, thin or narrow space), ``1.234.567``
  and ``1'234'567``. A fraction of zeros (``7.0``, from a float conversion) is accepted;
  any other fraction is refused ("not a whole number"). Leading zeros are dropped (``007``
  is 7), so codes whose zeros matter (census codes) belong in text fields. Scientific
  notation is accepted only when every digit is written (``1.234E+3``; not ``1.2E+3``,
  which a spreadsheet may have rounded). Limit: ±(2**53 - 1), the range a JSON number keeps
  exactly (I-JSON, RFC 7493 section 2.2).
* ``decimal``: a JSON *string* holding the canonical decimal form of the value (read with
  ``decimal.Decimal``, never a float, so no digit is lost): plain notation, no ``+``, no
  leading or trailing zeros, ``0`` for zero (``"012.50"`` gives ``"12.5"``, ``"1.5E-3"``
  gives ``"0.0015"``). Separators as for integers. The decimal mark is ``.`` or ``,``: when
  a cell has both, the last one is the mark (``1,234.5``, ``1.234,5``); a single comma not
  followed by exactly three digits is a decimal comma (``12,5``). A lone ``1,234`` could be
  either, so it is refused as ambiguous unless the field option
  ``{"decimalSeparator": "."}`` or ``","`` says which (for integer fields it can only be
  1234). ``NaN`` and infinities are refused.
* ``boolean``: ``bool`` from, case-insensitively, true/false, t/f, yes/no, y/n, 1/0,
  oui/non, vrai/faux, हाँ/नहीं.
* ``date``: ISO 8601 ``YYYY-MM-DD`` string. Read: ISO 8601 (``2019-07-18``, also week
  dates), ISO basic ``YYYYMMDD`` (the NHS epraccur form), year-first ``2019/07/18``, day
  and month names in English or French (``18 Jul 2019``, ``July 18, 2019``, ``18 juillet
  2019``), and ``D/M/YYYY`` or ``M/D/YYYY`` (separators ``/ . -``). The last is read only
  when the value can be read one way (``18/07/2019``, ``07/18/2019``, ``03/03/2019``);
  ``03/04/2019`` is refused as ambiguous unless the field option ``{"dayfirst": true}`` (or
  ``false``) or ``{"format": "%d/%m/%Y"}`` (``strptime`` codes) says how. Two-digit years
  are refused (no guessing of the century) unless a ``format`` with ``%y`` is given. A time
  of day other than midnight is refused. Impossible dates (``2019-02-30``) are refused. A
  bare 5-digit number (a spreadsheet serial day) is refused with a hint.
* ``datetime``: ISO 8601 string in UTC with its offset,
  ``2019-07-18T15:47:36.297000+00:00`` (microseconds only when not zero). Read: ISO 8601
  with ``T`` or a space, with or without seconds and fraction (up to 9 digits, cut to
  microseconds), offset ``Z``, ``+05:30``, ``+0530`` or ``+05`` (from -12:00 to +14:00);
  any date form accepted by ``date`` followed by ``H:MM[:SS[.f]]`` and optional
  ``AM``/``PM``; a date alone means midnight. A value without an offset is local time in
  the field option ``timeZone`` (IANA name, default ``UTC``); a local time that falls in a
  daylight-saving gap, or in the repeated hour, is refused (write the offset).
* ``phone``: E.164 string (ITU-T E.164), see :func:`normalize_phone`; region from the field
  option ``{"region": "SN"}``, else the parser's default region.
* ``select_one``: the choice's name. Field option ``{"choices": [...]}``, each a name or
  ``{"name": ..., "label": ...}`` (a label may be a ``{language: text}`` mapping). A cell
  matches a name exactly, else a name or label compared with :func:`normalize_header`
  folding (case, spaces, Unicode compatibility forms). Without choices, any value is kept.
  A cell longer than any cell that could match a choice (four times the longest name or
  label, plus 32 characters: folding drops invisible characters, joins runs of spaces and
  composes letters written apart) is refused at once, before any folding or lookup.
* ``select_multiple``: ``list`` of choice names, from a cell whose names are separated by
  spaces (as KoBo and ODK export them), commas or semicolons; duplicates dropped; in the
  order of the choice list (the order of the cell when there are no choices). A cell that
  is one whole name or label counts as that single choice. A cell longer than the longest
  list of choices could be (each choice once, at the bound of ``select_one``) is refused at
  once, before it is split.
* ``geopoint``: ``{"lat": float, "lon": float}`` from ``lat lon`` or ``lat,lon``, plus
  ``"alt"`` and ``"accuracy"`` (metres) when given as ODK does (``lat lon alt accuracy``).
  Decimal degrees, WGS 84; latitude within ±90, longitude within ±180.

Phone numbers (:func:`normalize_phone`) and header names (:func:`normalize_header`) have
their own rules, in their docstrings.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeAlias

import phonenumbers

JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"
"""A value that ``json.dumps`` writes as is."""

Parser: TypeAlias = Callable[[str], JSONValue]


class FieldType(StrEnum):
    """The field types of a form, as in the ``collect.form_fields.type`` CHECK list."""

    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    PHONE = "phone"
    SELECT_ONE = "select_one"
    SELECT_MULTIPLE = "select_multiple"
    GEOPOINT = "geopoint"


class InvalidValue(ValueError):
    """A cell that cannot be read as its field's type; ``reason`` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidFieldSpec(ValueError):
    """A field definition (type or options) that no parser can be built from.

    Raised by :func:`make_parser` before any cell is read: a problem of the form, not of
    the file, so the runner fails the task rather than counting row errors.
    """


@dataclass(frozen=True)
class FieldSpec:
    """One form field, as stored in ``collect.form_fields``.

    ``options`` is the field's JSON options object (``None`` for none); the keys read here
    are ``choices``, ``format``, ``dayfirst``, ``decimalSeparator``, ``timeZone`` and
    ``region``; other keys are left to other readers.
    """

    name: str
    type: FieldType
    required: bool = False
    options: Mapping[str, Any] | None = None


# --------------------------------------------------------------------------- helpers

# Every character for which str.isspace() is true (what str.strip() removes), plus the
# zero-width space and the BOM (U+FEFF).
_STRIP = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
    "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\ufeff"
)
_MISSING = "required value is missing"
_MAX_SHOWN = 60


def _show(value: str) -> str:
    """``value`` quoted for a reason, cut to a readable length."""
    if len(value) > _MAX_SHOWN:
        value = value[: _MAX_SHOWN - 3] + "..."
    return repr(value)


# ----------------------------------------------------------------------------- text


def _text(s: str) -> str:
    if "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in s:
        raise InvalidValue(f"text contains a NUL character: {_show(s)}")
    return unicodedata.normalize("NFC", s)


# -------------------------------------------------------------------------- numbers

_MAX_SAFE_INT = 2**53 - 1
_DEC_CTX = Context(prec=400)
_MAX_NUMBER_LEN = 100
_MAX_EXPONENT = 100
# Plain form: sign, digits, optional "." fraction, optional exponent.
_PLAIN_NUMBER = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,4}))?")
_SIGN = re.compile(r"[+\-\u2212]")
# Digits and the characters that may separate their groups.
_NUMBER_BODY = re.compile(r"[\d.,\s']+")
_WESTERN_GROUPS = re.compile(r"\d{1,3}(?:(?P<sep>[,.\s'])\d{3})(?:(?P=sep)\d{3})*")
_INDIAN_GROUPS = re.compile(r"\d{1,2}(?:,\d{2})*,\d{3}")


def _valid_grouping(int_part: str) -> bool:
    """Whether ``int_part`` is digits grouped by one kind of separator, e.g. ``1,234``."""
    if int_part[0] == "0":
        return False
    return bool(_WESTERN_GROUPS.fullmatch(int_part) or _INDIAN_GROUPS.fullmatch(int_part))


def _read_number(s: str, *, mark: str | None, whole: bool) -> Decimal:
    """Read ``s`` (stripped, non-empty) as a decimal number; see the module rules.

    ``mark`` is the decimal mark when the field fixes it, ``None`` to infer it. ``whole``
    says the field is an integer field (a lone ``1,234`` is then 1234, and scientific
    notation must keep every digit).
    """
    if len(s) > _MAX_NUMBER_LEN:
        raise InvalidValue(f"number is too long ({len(s)} characters)")
    if mark != ",":
        plain = _PLAIN_NUMBER.fullmatch(s)
        if plain is not None:
            return _read_plain(s, plain, whole=whole)
    sign = ""
    body = s
    if _SIGN.match(body):
        sign = "-" if body[0] != "+" else ""
        body = body[1:].lstrip(_STRIP)
    if not body or not _NUMBER_BODY.fullmatch(body) or not body[0].isdecimal():
        raise InvalidValue(f"not a number: {_show(s)}")
    has_comma = "," in body
    has_dot = "." in body
    if mark is None:
        if has_comma and has_dot:
            mark = "," if body.rfind(",") > body.rfind(".") else "."
        elif has_dot:
            mark = "." if body.count(".") == 1 else None
        elif has_comma and body.count(",") == 1:
            int_part, _, frac = body.partition(",")
            if len(frac) == 3 and _valid_grouping(int_part + "," + frac):
                if not whole:
                    raise InvalidValue(
                        f"{_show(s)} is ambiguous: {int_part}{frac} with a thousands "
                        f"separator, or {int_part}.{frac} with a decimal comma; set the field "
                        "option decimalSeparator to '.' or ','"
                    )
                mark = None
            else:
                mark = ","
    if mark is not None and mark in body:
        int_part, _, frac = body.rpartition(mark)
        if not frac.isdecimal() and frac:
            raise InvalidValue(f"not a number: {_show(s)}")
    else:
        int_part, frac = body, ""
    if not int_part.isdecimal():
        if not _valid_grouping(int_part) or (mark is not None and mark in int_part):
            raise InvalidValue(f"not a number (badly placed separators): {_show(s)}")
        int_part = re.sub(r"\D", "", int_part)
    value = Decimal(f"{sign}{int_part}.{frac or '0'}")
    if whole and frac.strip("0"):
        raise InvalidValue(f"not a whole number: {_show(s)}")
    return value


def _read_plain(s: str, plain: re.Match[str], *, whole: bool) -> Decimal:
    """The plain ``[+-]digits[.digits][e±n]`` form, already matched."""
    _sign, int_digits, frac, exponent = plain.groups()
    if not int_digits and not frac:
        raise InvalidValue(f"not a number: {_show(s)}")
    if exponent is not None and abs(int(exponent)) > _MAX_EXPONENT:
        raise InvalidValue(f"number is out of range: {_show(s)}")
    value = Decimal(s)
    if whole:
        if value != value.to_integral_value():
            raise InvalidValue(f"not a whole number: {_show(s)}")
        if exponent is not None and value:
            written = len((int_digits + (frac or "")).lstrip("0"))
            needed = len(str(abs(int(value))))
            if written < needed:
                raise InvalidValue(
                    f"{_show(s)} shows only {written} digits of a {needed}-digit number (a "
                    "spreadsheet may have rounded it); format the column as a number without "
                    "exponent, or as text, and export it again"
                )
    return value


def _integer_parser(options: Mapping[str, Any]) -> Parser:
    mark = _decimal_mark(options)

    def parse_integer(s: str) -> JSONValue:
        if s.isdecimal() and len(s) < 16:
            return int(s)
        value = int(_read_number(s, mark=mark, whole=True))
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value
        raise InvalidValue(
            f"whole number {_show(s)} is beyond ±(2**53 - 1), the range stored exactly"
        )

    return parse_integer


def _decimal_parser(options: Mapping[str, Any]) -> Parser:
    mark = _decimal_mark(options)

    def parse_decimal(s: str) -> JSONValue:
        value = _read_number(s, mark=mark, whole=False).normalize(_DEC_CTX)
        if not value:
            return "0"
        if abs(value.adjusted()) > _MAX_EXPONENT:
            raise InvalidValue(f"number is out of range: {_show(s)}")
        return format(value, "f")

    return parse_decimal


def _decimal_mark(options: Mapping[str, Any]) -> str | None:
    mark = options.get("decimalSeparator")
    if mark not in (None, ".", ","):
        raise InvalidFieldSpec(f"option decimalSeparator must be '.' or ',', not {mark!r}")
    return mark


# ------------------------------------------------------------------------- booleans

_TRUE = frozenset({"true", "t", "yes", "y", "1", "oui", "vrai", "हाँ", "हां"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "non", "faux", "नहीं"})


def _boolean(s: str) -> bool:
    key = s.casefold()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise InvalidValue(f"not a yes/no value: {_show(s)} (use yes/no, true/false or 1/0)")


# ---------------------------------------------------------------------------- dates

_MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "january jan janvier janv",
        "february feb février fevrier févr fevr fév fev",
        "march mar mars",
        "april apr avril avr",
        "may mai",
        "june jun juin",
        "july jul juillet juil",
        "august aug août aout",
        "september sep sept septembre",
        "october oct octobre",
        "november nov novembre",
        "december dec décembre decembre déc",
    ),
    start=1,
):
    for _name in _names.split():
        _MONTHS[_name] = _number
_MONTH_NAMES = [
    *("January", "February", "March", "April", "May", "June"),
    *("July", "August", "September", "October", "November", "December"),
]

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_BASIC_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_NUMERIC_DATE = re.compile(r"(\d{1,4})([/.\-])(\d{1,2})\2(\d{1,4})")
_NAMED_DMY = re.compile(
    r"(\d{1,2})(?:st|nd|rd|th|er)?[\s\-/.]*([^\W\d_]{3,})\.?[\s\-/.,]*(\d{4}|\d{2})"
)
_NAMED_MDY = re.compile(r"([^\W\d_]{3,})\.?[\s\-]*(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4}|\d{2})")
_SERIAL_DAY = re.compile(r"\d{5}(?:\.\d+)?")
_WEEK_DATE = re.compile(r"\d{4}-?W\d{2}-?\d")
# A time of day at the end of a cell, with an optional AM/PM and offset.
_TIME_TAIL = re.compile(
    r"(?:T|\s+|,\s*)(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(?:([AaPp])\.?[Mm]\.?)?\s*(Z|UTC|GMT|[+\-\u2212]\d{2}(?::?\d{2})?)?\Z"
)
_MIDNIGHT = re.compile(r"[T\s]+0{1,2}:00(?::00(?:\.0+)?)?\s*(?:Z|UTC|GMT|[+\-]00:?00)?\Z")


def _make_date(year: int, month: int, day: int, shown: str) -> dt.date:
    """``date(year, month, day)``, or :class:`InvalidValue` saying why it does not exist."""
    if not 1 <= month <= 12:
        raise InvalidValue(f"date {shown} does not exist (there is no month {month})")
    try:
        return dt.date(year, month, day)
    except ValueError:
        pass
    if not 1 <= year <= 9999:
        raise InvalidValue(f"date {shown} is out of range (years 1 to 9999)")
    if day < 1:
        raise InvalidValue(f"date {shown} does not exist (there is no day {day})")
    last = calendar.monthrange(year, month)[1]
    raise InvalidValue(
        f"date {shown} does not exist ({_MONTH_NAMES[month - 1]} {year} has {last} days)"
    )


def _two_digit_year(s: str) -> InvalidValue:
    return InvalidValue(
        f"date {_show(s)} has a two-digit year; write the year in full, or set the field "
        "option format (e.g. '%d/%m/%y')"
    )


def _read_date(s: str, dayfirst: bool | None) -> dt.date:
    """Read a date written in one of the forms listed in the module rules."""
    m = _ISO_DATE.fullmatch(s)
    if m is not None:
        return _make_date(int(m[1]), int(m[2]), int(m[3]), s)
    m = _BASIC_DATE.fullmatch(s)
    if m is not None:
        return _make_date(int(m[1]), int(m[2]), int(m[3]), f"{s} (read as YYYYMMDD)")
    m = _NUMERIC_DATE.fullmatch(s)
    if m is not None:
        first, _sep, middle, last = m.groups()
        if len(first) == 4:
            return _make_date(int(first), int(middle), int(last), _show(s))
        if len(first) > 2 or len(last) == 3 or len(last) == 1:
            raise InvalidValue(f"not a date: {_show(s)}")
        if len(last) == 2:
            raise _two_digit_year(s)
        a, b, year = int(first), int(middle), int(last)
        if dayfirst is None:
            day_first_ok, month_first_ok = 1 <= b <= 12, 1 <= a <= 12
            if day_first_ok and month_first_ok and a != b:
                raise InvalidValue(
                    f"date {_show(s)} is ambiguous: {a} {_MONTH_NAMES[b - 1]} {year} (day "
                    f"first) or {_MONTH_NAMES[a - 1]} {b}, {year} (month first); set the field "
                    "option dayfirst to true or false, or format, or write it as YYYY-MM-DD"
                )
            if not (day_first_ok or month_first_ok):
                raise InvalidValue(
                    f"date {_show(s)} does not exist (neither {a} nor {b} is a month)"
                )
            dayfirst = day_first_ok
        day, month = (a, b) if dayfirst else (b, a)
        return _make_date(year, month, day, _show(s))
    m = _NAMED_DMY.fullmatch(s)
    if m is not None:
        return _named_date(s, m[3], m[2], m[1])
    m = _NAMED_MDY.fullmatch(s)
    if m is not None:
        return _named_date(s, m[3], m[1], m[2])
    if _WEEK_DATE.fullmatch(s):
        try:
            return dt.date.fromisoformat(s)
        except ValueError:
            raise InvalidValue(f"week date {_show(s)} does not exist") from None
    if _SERIAL_DAY.fullmatch(s):
        raise InvalidValue(
            f"not a date: {_show(s)} looks like a spreadsheet serial day number; format the "
            "column as a date (YYYY-MM-DD) and export it again"
        )
    raise InvalidValue(f"not a date: {_show(s)} (write it as YYYY-MM-DD)")


def _named_date(s: str, year: str, month_name: str, day: str) -> dt.date:
    month = _MONTHS.get(month_name.casefold())
    if month is None:
        raise InvalidValue(f"not a date: {_show(s)} ({month_name!r} is not a month name)")
    if len(year) != 4:
        raise _two_digit_year(s)
    return _make_date(int(year), month, int(day), _show(s))


def _strptime(s: str, fmt: str, what: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(s, fmt)
    except ValueError as exc:
        why = str(exc)
    if "match format" in why or "unconverted data" in why:
        raise InvalidValue(f"{what} {_show(s)} does not match the format {fmt!r}")
    raise InvalidValue(f"{what} {_show(s)} does not exist ({why})")


def _date_options(options: Mapping[str, Any]) -> tuple[str | None, bool | None]:
    fmt = options.get("format")
    dayfirst = options.get("dayfirst")
    if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
        raise InvalidFieldSpec(f"option format must be a strptime format, not {fmt!r}")
    if dayfirst is not None and not isinstance(dayfirst, bool):
        raise InvalidFieldSpec(f"option dayfirst must be true or false, not {dayfirst!r}")
    return fmt, dayfirst


def _date_parser(options: Mapping[str, Any]) -> Parser:
    fmt, dayfirst = _date_options(options)
    date_from_iso = dt.date.fromisoformat

    def parse_date(s: str) -> JSONValue:
        if len(s) == 10 and s[4] == "-" and s[7] == "-":
            try:
                return date_from_iso(s).isoformat()
            except ValueError:
                pass  # read again below, for a precise reason
        if fmt is not None and not _ISO_DATE.fullmatch(s):
            return _strptime(s, fmt, "date").date().isoformat()
        if ":" in s:
            midnight = _MIDNIGHT.search(s)
            if midnight is not None:
                s = s[: midnight.start()]
            elif _TIME_TAIL.search(s):
                raise InvalidValue(f"date {_show(s)} has a time of day; use a datetime field")
        return _read_date(s, dayfirst).isoformat()

    return parse_date


# ------------------------------------------------------------------------ datetimes

_UTC = dt.UTC
_MIN_OFFSET, _MAX_OFFSET = dt.timedelta(hours=-12), dt.timedelta(hours=14)


def _offset(text: str, s: str) -> dt.tzinfo:
    """A fixed offset from ``Z``, ``UTC``, ``+05:30``, ``+0530`` or ``+05``."""
    if text in ("Z", "UTC", "GMT"):
        return _UTC
    sign = -1 if text[0] in "-\u2212" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise InvalidValue(f"offset {text} is out of range (-12:00 to +14:00): {_show(s)}")
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def _local_to_utc(naive: dt.datetime, zone: dt.tzinfo, s: str) -> dt.datetime:
    """``naive`` read as wall time in ``zone``; refuses times a DST change skips or repeats."""
    first = naive.replace(tzinfo=zone)
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        back = first.astimezone(_UTC).astimezone(zone).replace(tzinfo=None)
        if back != naive:
            raise InvalidValue(
                f"time {_show(s)} does not exist in {zone} (skipped by a daylight-saving "
                "change); write it with its UTC offset"
            )
        raise InvalidValue(
            f"time {_show(s)} happens twice in {zone} (repeated by a daylight-saving "
            "change); write it with its UTC offset"
        )
    return first.astimezone(_UTC)


def _datetime_parser(options: Mapping[str, Any]) -> Parser:
    fmt, dayfirst = _date_options(options)
    zone_name = options.get("timeZone", "UTC")
    try:
        zone: dt.tzinfo = _UTC if zone_name == "UTC" else zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidFieldSpec(
            f"option timeZone {zone_name!r} is not an IANA time zone (e.g. 'Asia/Kolkata')"
        ) from None
    from_iso = dt.datetime.fromisoformat

    def to_utc(value: dt.datetime, s: str) -> str:
        try:
            offset = value.utcoffset()
            if offset is not None and not _MIN_OFFSET <= offset <= _MAX_OFFSET:
                raise InvalidValue(f"offset of {_show(s)} is out of range (-12:00 to +14:00)")
            if value.tzinfo is None:
                value = (
                    value.replace(tzinfo=_UTC) if zone is _UTC else _local_to_utc(value, zone, s)
                )
            return value.astimezone(_UTC).isoformat()
        except OverflowError:
            raise InvalidValue(f"date-time {_show(s)} is out of range") from None

    def parse_datetime(s: str) -> JSONValue:
        if len(s) >= 10 and s[4] == "-":
            try:
                value = from_iso(s)
            except ValueError:
                pass  # read again below, for a precise reason
            else:
                return to_utc(value, s)
        if fmt is not None:
            return to_utc(_strptime(s, fmt, "date-time"), s)
        return to_utc(_read_datetime(s, dayfirst), s)

    return parse_datetime


def _read_datetime(s: str, dayfirst: bool | None) -> dt.datetime:
    """A date form, optionally followed by a time of day and an offset."""
    m = _TIME_TAIL.search(s)
    if m is None or m.start() == 0:
        day = _read_date(s, dayfirst)
        return dt.datetime(day.year, day.month, day.day)
    day = _read_date(s[: m.start()], dayfirst)
    hour, minute = int(m[1]), int(m[2])
    second = int(m[3] or 0)
    micro = int((m[4] or "0")[:6].ljust(6, "0"))
    if m[5] is not None:
        if not 1 <= hour <= 12:
            raise InvalidValue(f"hour {hour} does not go with AM/PM: {_show(s)}")
        hour = hour % 12 + (12 if m[5] in "Pp" else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise InvalidValue(f"time of day does not exist: {_show(s)}")
    tz = _offset(m[6], s) if m[6] else None
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=tz)


# --------------------------------------------------------------------------- phones

_PHONE_CHARS = re.compile(r"\+?[\d\s().\-/]*")
_PHONE_NOT_ALLOWED = re.compile(r"[^\d\s().\-/]")
_NON_DIGITS = re.compile(r"\D")
_EXTENSION = re.compile(r"(?i)\d\s*(?:ext|x|#|poste)\.?\s*\d+\Z")
_FLOAT_TAIL = re.compile(r"(\+?\d+)\.0+")
_SCIENTIFIC = re.compile(r"(\+?)(\d)(?:[.,](\d*))?[eE]\+?(\d{1,2})")
_MEMBER_SPLIT = re.compile(r"[;|\r\n]+|,(?!\d+[eE])")
_E164 = phonenumbers.PhoneNumberFormat.E164
_VALIDATION = phonenumbers.ValidationResult
_WHY_NOT_POSSIBLE = {
    _VALIDATION.TOO_SHORT: "too short",
    _VALIDATION.TOO_LONG: "too long",
    _VALIDATION.INVALID_LENGTH: "of a length no number there has",
    _VALIDATION.IS_POSSIBLE_LOCAL_ONLY: "a local number without its area code",
}


def _check_region(region: str) -> str:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{region!r} is not a phone region (an ISO 3166-1 alpha-2 code)")
    return region


def _parse_valid(candidate: str, region: str) -> str | None:
    """``candidate`` in E.164 if phonenumbers reads it as a valid number, else ``None``."""
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension:
        return None
    # The region's own check first: it is cheaper than is_valid_number, which tries every
    # region of the country code, and it implies it.
    if not (
        phonenumbers.is_valid_number_for_region(number, region)
        or phonenumbers.is_valid_number(number)
    ):
        return None
    return str(phonenumbers.format_number(number, _E164))


def _why_not(candidate: str, region: str) -> str:
    """Why ``candidate`` (digits, maybe after ``+``) is not a valid number, for a reason."""
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return "it does not start with a known country code"
        return "it is too short" if "short" in str(exc).lower() else "it is not a phone number"
    why = _WHY_NOT_POSSIBLE.get(
        phonenumbers.is_possible_number_with_reason(number), "in no range of numbers in use"
    )
    if not candidate.startswith("+"):
        return f"it is {why}"
    where = phonenumbers.region_code_for_country_code(number.country_code or 0)
    if where == phonenumbers.UNKNOWN_REGION:
        return f"+{number.country_code} is not a country code in use"
    return f"+{number.country_code} is {where}, and {number.national_number} is {why} there"


def _phone_or_reason(raw: str, region: str) -> tuple[str, str | None]:
    """``(E.164, None)`` or ``("", reason)``: the work of :func:`normalize_phone`."""
    s = raw.strip(_STRIP)
    if not s:
        return "", "phone number is missing"
    float_tail = _FLOAT_TAIL.fullmatch(s)
    if float_tail is not None:
        s = float_tail[1]
    elif "e" in s or "E" in s:
        sci = _SCIENTIFIC.fullmatch(s)
        if sci is not None:
            plus, lead, frac, exponent = sci.groups()
            digits, length = lead + (frac or ""), int(exponent) + 1
            if len(digits.rstrip("0")) > length:
                return "", f"phone number {_show(raw)} has a fraction"
            if len(digits) < length:
                return "", (
                    f"phone number {_show(raw)} was rounded by a spreadsheet (scientific "
                    f"notation kept {len(digits)} of its {length} digits); format the column "
                    "as text and export it again"
                )
            s = plus + digits[:length]
    if not _PHONE_CHARS.fullmatch(s):
        if _EXTENSION.search(s):
            return "", f"phone number {_show(raw)} has an extension; give the number alone"
        bad = _PHONE_NOT_ALLOWED.search(s.lstrip("+"))
        char = bad[0] if bad is not None else "+"
        return "", f"phone number {_show(raw)} contains {char!r}, which is not part of a number"
    digits = _NON_DIGITS.sub("", s)
    if not digits:
        return "", f"phone number {_show(raw)} has no digits"
    if s[0] == "+":
        found = _parse_valid("+" + digits, region)
        if found is not None:
            return found, None
        reason = (
            f"phone number {_show(raw)} is not valid for any region "
            f"({_why_not('+' + digits, region)})"
        )
        local = _parse_valid(digits, region)
        if local is not None:
            reason += (
                f"; if it is a {region} number written without its country code, write {local}"
            )
        return "", reason
    candidates = [digits]
    if digits[0] != "0":
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        trunk = metadata.national_prefix if metadata is not None else None
        if trunk:
            candidates.append(trunk + digits)  # a spreadsheet dropped the trunk prefix
        if len(digits) >= 11:
            candidates.append("+" + digits)  # the "+" or "00" was dropped
    elif digits.startswith("00") and len(digits) > 4:
        candidates.append("+" + digits[2:])
    for candidate in candidates:
        found = _parse_valid(candidate, region)
        if found is not None:
            return found, None
    why = _why_not(digits, region)
    return "", f"phone number {_show(raw)} is not a valid {region} number ({why})"


_cached_phone = lru_cache(maxsize=65536)(_phone_or_reason)


def normalize_phone(raw: str, default_region: str) -> str:
    """One phone number as an E.164 string (ITU-T E.164, ``+`` and up to 15 digits).

    ``default_region`` (ISO 3166-1 alpha-2, e.g. ``IN``) is the country of numbers written
    without ``+``; an unknown region raises ``ValueError`` (not :class:`InvalidValue`).
    Validity is ``phonenumbers.is_valid_number`` (a number in an assigned range of its
    country), not only a plausible length. Spreadsheet damage is repaired:

    * spaces, NBSP, ``-``, ``.``, ``/`` and parentheses are dropped;
    * a ``.0`` tail from a float conversion is dropped (``9876543210.0``);
    * scientific notation is expanded when it keeps every digit (``9.19876543210E+11``) and
      refused as rounded when it does not (``9.19877E+11``);
    * a number written without ``+`` is tried, in this order, as a national number of the
      region (``01642 672351``; ``1642672351`` with its trunk ``0`` dropped by a
      spreadsheet is read the same way), with the region's trunk prefix added, and, when
      it has 11 or more digits, as an international number whose ``+`` or ``00`` was
      dropped (``221339612727``); ``00`` before a country code is read as ``+``. The first
      valid reading wins, so the region's own reading goes first.

    A number written with ``+`` is taken at its word: ``+339614718`` (a Senegal number
    whose ``221`` was left out, which reads as a too-short French number) is refused,
    and the reason suggests the number it would be in ``default_region`` when that is
    valid. Repairing it silently could give a real person's account to someone else.
    Extensions and letters are refused. Raises :class:`InvalidValue`.
    """
    value, reason = _cached_phone(raw, _check_region(default_region))
    if reason is not None:
        raise InvalidValue(reason)
    return value


def parse_member_phones(cell: str, default_region: str) -> list[str]:
    """Phone numbers of one cell as E.164 strings, de-duplicated, in the cell's order.

    Numbers are separated by ``;``, ``|``, ``,`` or line breaks (a comma inside a number in
    scientific notation, ``9,19876543210E+11``, does not separate); empty items are
    skipped and a blank cell gives ``[]``. Each number follows :func:`normalize_phone`;
    the first bad one raises :class:`InvalidValue` naming its position.
    """
    items = [item for part in _MEMBER_SPLIT.split(cell) if (item := part.strip(_STRIP))]
    region = _check_region(default_region)
    phones: list[str] = []
    seen: set[str] = set()
    for position, item in enumerate(items, start=1):
        value, reason = _cached_phone(item, region)
        if reason is not None:
            raise InvalidValue(f"member phone {position} of {len(items)}: {reason}")
        if value not in seen:
            seen.add(value)
            phones.append(value)
    return phones


def _phone_parser(options: Mapping[str, Any], default_region: str) -> Parser:
    region = options.get("region", default_region)
    if not isinstance(region, str):
        raise InvalidFieldSpec(f"option region must be a region code, not {region!r}")
    try:
        _check_region(region)
    except ValueError as exc:
        raise InvalidFieldSpec(f"option region: {exc}") from None

    def parse_phone(s: str) -> JSONValue:
        value, reason = _cached_phone(s, region)
        if reason is not None:
            raise InvalidValue(reason)
        return value

    return parse_phone


# -------------------------------------------------------------------------- headers

_WHITESPACE_RUN = re.compile(r"\s+")


def normalize_header(name: str) -> str:
    """A header or field name folded for matching (``"\\ufeffBlock  Name "`` -> ``"block name"``).

    Folded: BOMs (U+FEFF) and zero-width spaces (U+200B) anywhere are removed; Unicode
    compatibility forms are unified and the text is case-folded (NFKC, then casefold,
    then NFKC again: full-width letters, ligatures, ``ß``/``ss``, NBSP and other spaces
    become their plain forms); runs of whitespace become one space; surrounding
    whitespace goes. Not folded: punctuation (``_``, ``-``, ``/``, ``?``), accents and the
    joiners ZWJ/ZWNJ, which change meaning in Indic scripts. Two different headers can
    fold alike (``"Block Name "`` and ``"Block Name"`` in the LGD blocks file): callers
    must treat such a match as ambiguous.
    """
    if "\ufeff" in name or "\u200b" in name:
        name = name.replace("\ufeff", "").replace("\u200b", "")
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return _WHITESPACE_RUN.sub(" ", folded).strip()


# -------------------------------------------------------------------------- selects

_AMBIGUOUS = ""  # marks a folded key that two choices share
_MULTI_SPLIT = re.compile(r"[\s,;]+")
_MAX_LISTED = 12
# How much longer than a choice's own name or label a cell that matches it can be: folding
# removes BOMs and zero-width spaces, joins runs of spaces and composes letters written
# apart (an accent after its letter, three Hangul jamo for one syllable), never more.
_FOLD_FACTOR = 4
_FOLD_SLACK = 32


def _match_bound(length: int) -> int:
    """The longest cell that can fold to a text of ``length`` characters, in characters."""
    return _FOLD_FACTOR * length + _FOLD_SLACK


def _labels(label: object) -> list[str]:
    if isinstance(label, str):
        return [label]
    if isinstance(label, Mapping):
        return [text for text in label.values() if isinstance(text, str)]
    return []


def _choices(options: Mapping[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Choice names and their labels, or ``None`` when the field lists no choices."""
    raw = options.get("choices")
    if raw is None:
        return None
    if isinstance(raw, str | bytes) or not isinstance(raw, list | tuple):
        raise InvalidFieldSpec(f"option choices must be a list, not {type(raw).__name__}")
    names: list[str] = []
    labels: list[list[str]] = []
    for item in raw:
        if isinstance(item, str):
            name, item_labels = item, []
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            name, item_labels = item["name"], _labels(item.get("label"))
        else:
            raise InvalidFieldSpec(f"a choice must be a name or {{'name': ...}}, not {item!r}")
        if not name.strip():
            raise InvalidFieldSpec("a choice name is empty")
        if name in names:
            raise InvalidFieldSpec(f"choice {name!r} is listed twice")
        names.append(name)
        labels.append(item_labels)
    return (names, labels) if names else None


class _Choices:
    """Looks a cell up among a field's choices: exact name, then folded name or label.

    ``longest_one`` is the longest cell that can match one choice and ``longest_list`` the
    longest list of them (each choice once), in characters; parsers refuse longer cells
    before any lookup, so reading a hostile cell costs no more than reading a real one.
    """

    def __init__(self, names: list[str], labels: list[list[str]]) -> None:
        self.names = names
        bounds = [_match_bound(max([len(name), *(len(label.strip()) for label in item_labels)]))
                  for name, item_labels in zip(names, labels, strict=True)]
        self.longest_one = max(bounds)
        self.longest_list = sum(bounds)
        self.order = {name: position for position, name in enumerate(names)}
        self.exact: dict[str, str] = {}
        self.folded: dict[str, str] = {}
        for name, item_labels in zip(names, labels, strict=True):
            for label in item_labels:
                self.exact.setdefault(label.strip(), name)
        for name in names:
            self.exact[name] = name
        for name, item_labels in zip(names, labels, strict=True):
            for text in {normalize_header(t) for t in (name, *item_labels)} - {""}:
                other = self.folded.get(text)
                self.folded[text] = name if other is None or other == name else _AMBIGUOUS
        shown = ", ".join(names[:_MAX_LISTED])
        more = len(names) - _MAX_LISTED
        self.listing = shown + (f" and {more} more" if more > 0 else "")

    def find(self, value: str) -> str | None:
        found = self.exact.get(value)
        if found is not None:
            return found
        found = self.folded.get(normalize_header(value))
        if found == _AMBIGUOUS:
            raise InvalidValue(f"{_show(value)} matches more than one choice ({self.listing})")
        return found

    def refuse_longer(self, s: str, bound: int, what: str) -> None:
        """Raise :class:`InvalidValue` when ``s`` is longer than ``bound`` characters."""
        if len(s) > bound:
            raise InvalidValue(f"too long for {what} ({len(s):,} characters, at most "
                               f"{bound:,}): {_show(s)}")

    def get(self, value: str, cell: str) -> str:
        found = self.find(value)
        if found is None:
            where = "" if value == cell else f" (in {_show(cell)})"
            raise InvalidValue(f"{_show(value)} is not one of the choices{where}: {self.listing}")
        return found


def _select_one_parser(options: Mapping[str, Any]) -> Parser:
    listed = _choices(options)
    if listed is None:
        return _text
    choices = _Choices(*listed)

    bound = choices.longest_one
    refuse_longer = choices.refuse_longer

    def parse_select_one(s: str) -> JSONValue:
        refuse_longer(s, bound, "one of this field's choices")
        return choices.get(s, s)

    return parse_select_one


def _select_multiple_parser(options: Mapping[str, Any]) -> Parser:
    listed = _choices(options)
    split = _MULTI_SPLIT.split
    if listed is None:

        def parse_free_multiple(s: str) -> JSONValue:
            return list(dict.fromkeys(_text(item) for item in split(s) if item))

        return parse_free_multiple
    choices = _Choices(*listed)
    exact = choices.exact.get
    position = choices.order.__getitem__
    bound = choices.longest_list
    refuse_longer = choices.refuse_longer

    def parse_select_multiple(s: str) -> JSONValue:
        refuse_longer(s, bound, "a list of this field's choices")
        whole = exact(s)
        if whole is not None:
            return [whole]
        items = [item for item in split(s) if item]
        names = [exact(item) for item in items]
        if None in names:  # the forgiving comparisons, off the common path
            whole = choices.find(s)
            if whole is not None:
                return [whole]
            names = [choices.get(item, s) for item in items]
        picked = sorted({name for name in names if name}, key=position)
        return list[JSONValue](picked)

    return parse_select_multiple


# ------------------------------------------------------------------------- geopoints

_NUM = r"([+\-]?\d{1,3}(?:\.\d+)?)"
_GEOPOINT = re.compile(
    rf"{_NUM}(?:\s*[,;]\s*|\s+){_NUM}(?:\s+([+\-]?\d+(?:\.\d+)?)(?:\s+(\d+(?:\.\d+)?))?)?"
)


def _geopoint(s: str) -> dict[str, JSONValue]:
    m = _GEOPOINT.fullmatch(s)
    if m is None:
        raise InvalidValue(
            f"not a point: {_show(s)} (write 'latitude longitude' in decimal degrees, "
            "e.g. '16.03292006 -16.47092303')"
        )
    lat, lon = float(m[1]), float(m[2])
    if not -90.0 <= lat <= 90.0:
        swapped = " (are latitude and longitude swapped?)" if abs(lon) <= 90.0 else ""
        raise InvalidValue(f"latitude {m[1]} is outside -90..90: {_show(s)}{swapped}")
    if not -180.0 <= lon <= 180.0:
        raise InvalidValue(f"longitude {m[2]} is outside -180..180: {_show(s)}")
    point: dict[str, JSONValue] = {"lat": lat, "lon": lon}
    if m[3] is not None:
        point["alt"] = float(m[3])
    if m[4] is not None:
        point["accuracy"] = float(m[4])
    return point


# --------------------------------------------------------------------------- parsers

# The longest cell each typed field reads, checked on the stripped cell before any pattern
# sees it: a pattern searched over a long run of spaces or digits can take time quadratic
# in the cell's length (a datetime cell of 40,000 spaces took 22 s), and no real value of
# these types comes near the bound. Text cells are read by linear scans only; a select
# cell is bounded by its field's choices (``_Choices``) before any folding or lookup.
MAX_CELL_LENGTH: Mapping[FieldType, int] = {
    FieldType.INTEGER: _MAX_NUMBER_LEN,
    FieldType.DECIMAL: _MAX_NUMBER_LEN,
    FieldType.BOOLEAN: 32,
    FieldType.DATE: 100,
    FieldType.DATETIME: 100,
    FieldType.PHONE: 64,
    FieldType.GEOPOINT: 200,
}


def _bounded(convert: Parser, field_type: FieldType) -> Parser:
    """``convert``, refusing first a cell longer than :data:`MAX_CELL_LENGTH` allows."""
    limit = MAX_CELL_LENGTH.get(field_type)
    if limit is None:
        return convert

    def bounded(s: str) -> JSONValue:
        if len(s) > limit:
            raise InvalidValue(f"too long for a {field_type.value} value ({len(s):,} "
                               f"characters, at most {limit}): {_show(s)}")
        return convert(s)

    return bounded


def make_parser(spec: FieldSpec, *, default_region: str = "IN") -> Parser:
    """A function reading one raw cell of ``spec``'s field (see the module rules).

    The function returns the JSON-ready value, ``None`` for a blank cell of an optional
    field, and raises :class:`InvalidValue` for a bad cell (a blank required cell: "required
    value is missing"). ``default_region`` is the phone region when the field has no
    ``region`` option. Raises :class:`InvalidFieldSpec` for an unknown type or bad options.
    """
    try:
        field_type = FieldType(spec.type)
    except ValueError:
        raise InvalidFieldSpec(f"field {spec.name!r} has unknown type {spec.type!r}") from None
    options: Mapping[str, Any] = spec.options or {}
    if not isinstance(options, Mapping):
        raise InvalidFieldSpec(f"field {spec.name!r}: options must be an object")
    convert: Parser
    try:
        if field_type is FieldType.TEXT:
            convert = _text
        elif field_type is FieldType.INTEGER:
            convert = _integer_parser(options)
        elif field_type is FieldType.DECIMAL:
            convert = _decimal_parser(options)
        elif field_type is FieldType.BOOLEAN:
            convert = _boolean
        elif field_type is FieldType.DATE:
            convert = _date_parser(options)
        elif field_type is FieldType.DATETIME:
            convert = _datetime_parser(options)
        elif field_type is FieldType.PHONE:
            convert = _phone_parser(options, default_region)
        elif field_type is FieldType.SELECT_ONE:
            convert = _select_one_parser(options)
        elif field_type is FieldType.SELECT_MULTIPLE:
            convert = _select_multiple_parser(options)
        else:
            convert = _geopoint
    except InvalidFieldSpec as exc:
        raise InvalidFieldSpec(f"field {spec.name!r}: {exc}") from None
    convert = _bounded(convert, field_type)
    strip = _STRIP

    if spec.required:

        def parse_required(cell: str) -> JSONValue:
            s = cell.strip(strip)
            if not s:
                raise InvalidValue(_MISSING)
            return convert(s)

        return parse_required

    def parse_optional(cell: str) -> JSONValue:
        s = cell.strip(strip)
        if not s:
            return None
        return convert(s)

    return parse_optional


ColumnParser: TypeAlias = Callable[[Sequence[str]], tuple[list[JSONValue], dict[int, str]]]
"""Reads a column of cells: (values, reasons by index of the bad cells)."""


def make_column_parser(spec: FieldSpec, *, default_region: str = "IN") -> ColumnParser:
    """A function reading a whole column of ``spec``'s cells at once, by the rules of
    :func:`make_parser` (same values, same reasons).

    It returns ``(values, bad)``: ``values[i]`` is cell ``i``'s value (None when blank or
    bad) and ``bad`` maps the index of each bad cell to its reason. Text and integer
    columns whose cells all take the common path (plain ASCII or NFC text; unsigned ASCII
    digits) are checked with a few scans of the whole column, which is what lets a loader
    keep up with ``COPY``; any other column is read cell by cell. Raises
    :class:`InvalidFieldSpec` as :func:`make_parser` does.
    """
    cell = make_parser(spec, default_region=default_region)
    field_type = FieldType(spec.type)
    required = spec.required
    strip = _STRIP

    def by_cell(cells: Sequence[str]) -> tuple[list[JSONValue], dict[int, str]]:
        values: list[JSONValue] = []
        bad: dict[int, str] = {}
        for i, raw in enumerate(cells):
            try:
                values.append(cell(raw))
            except InvalidValue as exc:
                values.append(None)
                bad[i] = exc.reason
        return values, bad

    def fast(stripped: list[str]) -> list[JSONValue] | None:
        """The column's values when every cell is on the common path, else None."""
        blanks = "" in stripped
        if blanks and required:
            return None  # "required value is missing", said cell by cell
        if field_type is FieldType.TEXT:
            joined = "\x1f".join(stripped)  # a separator no combining mark can join onto
            if "\r" in joined or "\x00" in joined:
                return None
            if not (joined.isascii() or unicodedata.is_normalized("NFC", joined)):
                return None
            return [s or None for s in stripped] if blanks else stripped  # type: ignore[return-value]
        digits = "".join(stripped)
        if not (digits.isascii() and digits.isdigit() and max(map(len, stripped)) < 16):
            return None
        return [int(s) if s else None for s in stripped] if blanks else list(map(int, stripped))

    if field_type not in (FieldType.TEXT, FieldType.INTEGER):
        return by_cell

    def parse_column(cells: Sequence[str]) -> tuple[list[JSONValue], dict[int, str]]:
        raw = "".join(cells)
        if "\u200b" in raw or "\ufeff" in raw:
            stripped = [c.strip(strip) for c in cells]
        else:  # the default strip() removes exactly the other characters of _STRIP
            stripped = list(map(str.strip, cells))
        values = fast(stripped)
        return (values, {}) if values is not None else by_cell(cells)

    return parse_column
