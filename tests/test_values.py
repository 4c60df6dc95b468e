"""Cell values (``longtask.values``): pure tests, no server.

Values come from the real files in ``data/real`` (see the README there): NHS
epraccur (UK phones, YYYYMMDD dates), the St-Louis field-campaign export (Senegal phones,
ISO timestamps, space-separated multiple choices, GPS), and the Indian LGD lists (names in
Hindi and Kannada, census codes).
"""

from __future__ import annotations

import csv
import json
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devcluster import realdata
from longtask.values import (
    MAX_CELL_LENGTH,
    FieldSpec,
    FieldType,
    InvalidFieldSpec,
    InvalidValue,
    JSONValue,
    Parser,
    make_column_parser,
    make_parser,
    normalize_header,
    normalize_phone,
    parse_member_phones,
)

REPO = Path(__file__).resolve().parent.parent
REAL = realdata.FOLDER
E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # the CHECK on collect.field_users.phone_e164


def parser(
    field_type: FieldType,
    options: dict[str, Any] | None = None,
    *,
    required: bool = False,
    default_region: str = "IN",
) -> Parser:
    return make_parser(
        FieldSpec("field", field_type, required, options), default_region=default_region
    )


def reason_of(parse: Parser, raw: str) -> str:
    with pytest.raises(InvalidValue) as caught:
        parse(raw)
    return caught.value.reason


# ------------------------------------------------------------------------ the basics


def test_field_types_are_exactly_the_database_check_list() -> None:
    migration = (REPO / "longtask/db/migrations/versions/0001_initial.py").read_text()
    check = re.search(r"type\s+text NOT NULL CHECK \(type IN \(([^)]*)\)\)", migration)
    assert check is not None
    assert {t.strip().strip("'") for t in check[1].split(",")} == {t.value for t in FieldType}


def test_invalid_value_is_a_value_error_whose_message_is_the_reason() -> None:
    error = InvalidValue("not a whole number: '12.5'")
    assert isinstance(error, ValueError)
    assert error.reason == str(error) == "not a whole number: '12.5'"


@pytest.mark.parametrize("field_type", list(FieldType))
@pytest.mark.parametrize("blank", ["", "   ", "\xa0", "\t\r\n", "\ufeff", "\u200b \u3000"])
def test_blank_cell_of_optional_field_is_none(field_type: FieldType, blank: str) -> None:
    assert parser(field_type)(blank) is None


@pytest.mark.parametrize("field_type", list(FieldType))
def test_blank_cell_of_required_field_is_refused(field_type: FieldType) -> None:
    assert reason_of(parser(field_type, required=True), " ") == "required value is missing"


@pytest.mark.parametrize("space", [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()])
def test_every_unicode_space_around_a_value_is_stripped(space: str) -> None:
    assert parser(FieldType.INTEGER)(f"{space}45{space}") == 45


@pytest.mark.parametrize("placeholder", ["NA", "N/A", "null", "-"])
def test_placeholder_words_are_values_not_blanks(placeholder: str) -> None:
    assert parser(FieldType.TEXT)(placeholder) == placeholder
    assert "not a number" in reason_of(parser(FieldType.INTEGER), placeholder)


def test_parsers_keep_no_state_between_cells() -> None:
    parse = parser(FieldType.DATE)
    assert parse("13/04/2019") == "2019-04-13"  # day first, the only reading
    assert "ambiguous" in reason_of(parse, "03/04/2019")  # not settled by the cell before


@pytest.mark.parametrize(
    ("field_type", "options", "raw"),
    [
        (FieldType.TEXT, None, "Poste de santé de Bango"),
        (FieldType.INTEGER, None, "1,234"),
        (FieldType.DECIMAL, None, "16.03292006"),
        (FieldType.BOOLEAN, None, "yes"),
        (FieldType.DATE, None, "19740401"),
        (FieldType.DATETIME, None, "2019-07-18T15:47:36.297000+00:00"),
        (FieldType.PHONE, {"region": "SN"}, "+221339612727"),
        (FieldType.SELECT_ONE, {"choices": ["pharmacy", "doctors"]}, "pharmacy"),
        (FieldType.SELECT_MULTIPLE, None, "doctor pharmacy birthing_center"),
        (FieldType.GEOPOINT, None, "16.03292006 -16.47092303"),
    ],
)
def test_values_survive_a_json_round_trip(
    field_type: FieldType, options: dict[str, Any] | None, raw: str
) -> None:
    value = parser(field_type, options)(raw)
    assert value is not None
    assert json.loads(json.dumps(value)) == value


# ----------------------------------------------------------------------------- text


def test_text_is_stripped_and_keeps_its_inner_line_breaks() -> None:
    raw = "09:00-18:30\n08:00-11:00,12:30-15:00\nsunrise-sunset\n"  # a St-Louis cell
    assert parser(FieldType.TEXT)(raw) == "09:00-18:30\n08:00-11:00,12:30-15:00\nsunrise-sunset"


def test_text_line_breaks_are_written_as_lf() -> None:
    raw = "Zone militaire n°2\r\nCentre médical Garnison Saint-Louis"
    assert parser(FieldType.TEXT)(raw) == (
        "Zone militaire n°2\nCentre médical Garnison Saint-Louis"
    )


@pytest.mark.parametrize(
    "name",
    [
        "शाम्हो अकहा कुरहा",  # blocks.csv, Hindi
        "ಕೊಟ್ಟೂರು",  # blocks.csv, Kannada (ೊ and ೂ have canonical decompositions)
        "ರಬಕವಿ-ಬನಹಟ್ಟಿ",
        "Ministère de la santé",  # St-Louis
    ],
)
def test_text_is_stored_in_nfc_however_it_was_typed(name: str) -> None:
    decomposed = unicodedata.normalize("NFD", name)
    parse = parser(FieldType.TEXT)
    assert parse(decomposed) == parse(name) == unicodedata.normalize("NFC", name)


def test_text_with_a_nul_character_is_refused() -> None:
    assert "NUL" in reason_of(parser(FieldType.TEXT), "KURTHA\x00")


# -------------------------------------------------------------------------- integers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),  # St-Louis "Number of Beds"
        ("40", 40),
        ("-5", -5),
        ("+5", 5),
        ("\u22125", -5),  # the Unicode minus sign
        ("05462", 5462),  # Karnataka census code: zeros are lost, so codes are text fields
        ("1,234", 1234),
        ("1,234,567", 1234567),
        ("12,34,567", 1234567),  # Indian grouping (lakh)
        ("1 234 567", 1234567),
        ("1\u202f234", 1234),  # narrow no-break space, French typography
        ("1.234.567", 1234567),
        ("7.0", 7),  # a float conversion
        ("12,0", 12),
        ("1.234E+3", 1234),
        ("१२", 12),  # Devanagari digits
    ],
)
def test_integer_accepts(raw: str, expected: int) -> None:
    value = parser(FieldType.INTEGER)(raw)
    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("12.5", "not a whole number: '12.5'"),
        ("12,5", "not a whole number: '12,5'"),
        ("1.2E+3", "shows only 2 digits of a 4-digit number"),
        ("abc", "not a number: 'abc'"),
        ("1,23,4", "badly placed separators"),
        ("1,234 567", "not a number"),
        ("9007199254740992", "beyond ±(2**53 - 1)"),
        ("1e400", "out of range"),
        ("NaN", "not a number"),
        ("Infinity", "not a number"),
    ],
)
def test_integer_refuses(raw: str, reason: str) -> None:
    assert reason in reason_of(parser(FieldType.INTEGER), raw)


# -------------------------------------------------------------------------- decimals


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("16.03292006", "16.03292006"),  # St-Louis latitude
        ("-16.4562459", "-16.4562459"),  # St-Louis longitude
        ("012.50", "12.5"),
        ("40", "40"),
        ("-0.0", "0"),
        (".5", "0.5"),
        ("1.5E-3", "0.0015"),
        ("1E+3", "1000"),
        ("0.1000000000000000055511151231257827", "0.1000000000000000055511151231257827"),
        ("1,234.5", "1234.5"),
        ("1.234,5", "1234.5"),
        ("1 234,5", "1234.5"),
        ("12,34,567.89", "1234567.89"),
        ("12,5", "12.5"),  # a decimal comma, as written in Senegal
        ("0,125", "0.125"),
        ("1,234,567", "1234567"),
    ],
)
def test_decimal_is_an_exact_canonical_string(raw: str, expected: str) -> None:
    assert parser(FieldType.DECIMAL)(raw) == expected


def test_decimal_with_one_comma_before_three_digits_is_ambiguous() -> None:
    reason = reason_of(parser(FieldType.DECIMAL), "1,234")
    assert "ambiguous" in reason
    assert "decimalSeparator" in reason


@pytest.mark.parametrize(
    ("mark", "raw", "expected"),
    [
        (",", "1,234", "1.234"),
        (",", "1.234", "1234"),
        (",", "1.234,5", "1234.5"),
        (".", "1,234", "1234"),
        (".", "1.234", "1.234"),
    ],
)
def test_decimal_separator_option_decides(mark: str, raw: str, expected: str) -> None:
    assert parser(FieldType.DECIMAL, {"decimalSeparator": mark})(raw) == expected


@pytest.mark.parametrize("raw", ["NaN", "-inf", "Infinity", "1.2.3", "12,5.3", "1,,234", "1e999"])
def test_decimal_refuses(raw: str) -> None:
    parse = parser(FieldType.DECIMAL)
    with pytest.raises(InvalidValue):
        parse(raw)


# -------------------------------------------------------------------------- booleans


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("yes", True),  # St-Louis "Is this facility wheelchair accessible?"
        ("no", False),
        ("YES", True),
        ("True", True),
        ("FALSE", False),
        ("y", True),
        ("N", False),
        ("1", True),
        ("0", False),
        ("oui", True),
        ("Non", False),
        ("vrai", True),
        ("faux", False),
        ("हाँ", True),
        ("नहीं", False),
    ],
)
def test_boolean_accepts(raw: str, expected: bool) -> None:
    assert parser(FieldType.BOOLEAN)(raw) is expected


@pytest.mark.parametrize("raw", ["unknown", "maybe", "2", "yes no"])
def test_boolean_refuses(raw: str) -> None:
    assert "not a yes/no value" in reason_of(parser(FieldType.BOOLEAN), raw)


# ----------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("19740401", "1974-04-01"),  # epraccur open date, YYYYMMDD
        ("20171031", "2017-10-31"),  # epraccur close date
        ("2019-07-18", "2019-07-18"),
        ("2019-7-8", "2019-07-08"),
        ("2019/07/18", "2019-07-18"),
        ("2019.07.18", "2019-07-18"),
        ("18/07/2019", "2019-07-18"),  # only a day-first reading exists
        ("07/18/2019", "2019-07-18"),  # only a month-first reading exists
        ("18-07-2019", "2019-07-18"),
        ("18.07.2019", "2019-07-18"),
        ("03/03/2019", "2019-03-03"),  # both readings agree
        ("18 Jul 2019", "2019-07-18"),
        ("18-Jul-2019", "2019-07-18"),
        ("July 18, 2019", "2019-07-18"),
        ("Jul 18 2019", "2019-07-18"),
        ("1er juillet 2019", "2019-07-01"),
        ("18 août 2019", "2019-08-18"),
        ("2019-W29-4", "2019-07-18"),  # ISO 8601 week date
        ("2019-07-18 00:00:00", "2019-07-18"),  # a date exported as midnight
        ("2019-07-18T00:00:00+00:00", "2019-07-18"),
    ],
)
def test_date_accepts(raw: str, expected: str) -> None:
    assert parser(FieldType.DATE)(raw) == expected


def test_ambiguous_day_month_date_is_refused_with_how_to_fix_it() -> None:
    reason = reason_of(parser(FieldType.DATE), "03/04/2019")
    assert "ambiguous" in reason
    assert "3 April 2019" in reason
    assert "March 4, 2019" in reason
    assert "dayfirst" in reason


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"dayfirst": True}, "2019-04-03"),
        ({"dayfirst": False}, "2019-03-04"),
        ({"format": "%d/%m/%Y"}, "2019-04-03"),
        ({"format": "%m/%d/%Y"}, "2019-03-04"),
    ],
)
def test_date_options_settle_the_day_month_order(options: dict[str, Any], expected: str) -> None:
    assert parser(FieldType.DATE, options)("03/04/2019") == expected


def test_date_format_option_reads_two_digit_years() -> None:
    assert parser(FieldType.DATE, {"format": "%d-%b-%y"})("18-Jul-19") == "2019-07-18"


def test_date_format_option_says_when_a_date_does_not_exist() -> None:
    parse = parser(FieldType.DATE, {"format": "%d/%m/%Y"})
    assert "date '30/02/2019' does not exist" in reason_of(parse, "30/02/2019")
    assert "does not match the format '%d/%m/%Y'" in reason_of(parse, "2019/02/28")


def test_date_format_option_still_reads_iso_dates() -> None:
    assert parser(FieldType.DATE, {"format": "%d/%m/%Y"})("2019-07-18") == "2019-07-18"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("2019-02-30", "date 2019-02-30 does not exist (February 2019 has 28 days)"),
        ("20190230", "does not exist"),
        ("2020-02-30", "February 2020 has 29 days"),
        ("31/04/2019", "April 2019 has 30 days"),
        ("2019-13-01", "there is no month 13"),
        ("00/05/2019", "there is no day 0"),
        ("13/13/2019", "neither 13 nor 13 is a month"),
        ("2019-W53-1", "does not exist"),
    ],
)
def test_impossible_dates_are_refused(raw: str, reason: str) -> None:
    assert reason in reason_of(parser(FieldType.DATE), raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("03/04/19", "two-digit year"),
        ("18-Jul-19", "two-digit year"),
        ("43664", "spreadsheet serial day number"),
        ("2019-07-18T15:47:36", "has a time of day"),
        ("18 Jux 2019", "not a month name"),
        ("yesterday", "not a date"),
    ],
)
def test_date_refuses(raw: str, reason: str) -> None:
    assert reason in reason_of(parser(FieldType.DATE), raw)


# ------------------------------------------------------------------------- datetimes


@pytest.mark.parametrize(
    "raw",
    [
        "2019-07-18T15:47:36.297000+00:00",  # St-Louis "Start", with microseconds
        "2019-07-18T16:52:52.399000+00:00",  # St-Louis "Timestamp"
        "2019-07-18T13:31:19+00:00",  # the one St-Louis value without a fraction
    ],
)
def test_datetime_in_utc_with_offset_is_kept_as_written(raw: str) -> None:
    assert parser(FieldType.DATETIME)(raw) == raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2019-07-18T15:47:36Z", "2019-07-18T15:47:36+00:00"),
        ("2019-07-18T21:17:36+05:30", "2019-07-18T15:47:36+00:00"),
        ("2019-07-18T21:17:36+0530", "2019-07-18T15:47:36+00:00"),
        ("2019-07-18T15:47:36.297000123+00:00", "2019-07-18T15:47:36.297000+00:00"),
        ("2019-07-18 15:47", "2019-07-18T15:47:00+00:00"),
        ("2019-07-18", "2019-07-18T00:00:00+00:00"),
        ("18/07/2019 15:47", "2019-07-18T15:47:00+00:00"),
        ("7/18/2019 3:47 PM", "2019-07-18T15:47:00+00:00"),
        ("18/07/2019 12:05 AM", "2019-07-18T00:05:00+00:00"),
        ("18/07/2019 21:17:36 +05:30", "2019-07-18T15:47:36+00:00"),
        ("18 Jul 2019 15:47:36", "2019-07-18T15:47:36+00:00"),
        ("19740401 08:00", "1974-04-01T08:00:00+00:00"),
    ],
)
def test_datetime_is_normalised_to_utc(raw: str, expected: str) -> None:
    assert parser(FieldType.DATETIME)(raw) == expected


@pytest.mark.parametrize(
    ("zone", "raw", "expected"),
    [
        ("Asia/Kolkata", "2019-07-18 21:17:36", "2019-07-18T15:47:36+00:00"),
        ("Africa/Dakar", "2019-07-18 15:47:36", "2019-07-18T15:47:36+00:00"),
        ("Europe/London", "2019-07-18 16:47:36", "2019-07-18T15:47:36+00:00"),
        ("Asia/Kolkata", "2019-07-18T15:47:36+00:00", "2019-07-18T15:47:36+00:00"),
    ],
)
def test_naive_datetime_is_read_in_the_field_time_zone(zone: str, raw: str, expected: str) -> None:
    assert parser(FieldType.DATETIME, {"timeZone": zone})(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("2019-03-31 01:30", "does not exist in Europe/London"),
        ("2019-10-27 01:30", "happens twice in Europe/London"),
    ],
)
def test_local_time_changed_by_daylight_saving_is_refused(raw: str, reason: str) -> None:
    assert reason in reason_of(parser(FieldType.DATETIME, {"timeZone": "Europe/London"}), raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("2019-02-30T10:00:00+00:00", "date 2019-02-30 does not exist"),
        ("2019-07-18T25:00", "time of day does not exist"),
        ("18/07/2019 13:00 PM", "does not go with AM/PM"),
        ("03/04/2019 10:00", "ambiguous"),
        ("2019-07-18T10:00+15:00", "out of range"),
        ("1563464839", "not a date"),
    ],
)
def test_datetime_refuses(raw: str, reason: str) -> None:
    assert reason in reason_of(parser(FieldType.DATETIME), raw)


# ---------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("01642 672351", "GB", "+441642672351"),  # epraccur, 99999 999999
        ("0300 1112300", "GB", "+443001112300"),  # epraccur, shared by several practices
        ("020 8333 300", "GB", None),  # epraccur, one digit short
        ("+221339612727", "SN", "+221339612727"),  # St-Louis
        ("+221776806969", "IN", "+221776806969"),  # "+" wins over the region
        ("339641179", "SN", "+221339641179"),  # St-Louis, a bare local number
        ("9876543210", "IN", "+919876543210"),  # Indian mobile
        ("09876543210", "IN", "+919876543210"),
        ("+91 98765 43210", "IN", "+919876543210"),
        ("+91-98765-43210", "IN", "+919876543210"),
        ("(0)98765.43210", "IN", "+919876543210"),
        ("0091 98765 43210", "GB", "+919876543210"),
        ("९८७६५४३२१०", "IN", "+919876543210"),  # Devanagari digits
    ],
)
def test_normalize_phone_gives_e164(raw: str, region: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(InvalidValue):
            normalize_phone(raw, region)
    else:
        assert normalize_phone(raw, region) == expected


def test_phone_whose_trunk_zero_a_spreadsheet_dropped_is_read() -> None:
    assert normalize_phone("1642672351", "GB") == "+441642672351"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("221339612727", "SN", "+221339612727"),
        ("221339612727", "IN", "+221339612727"),
        ("919876543210", "GB", "+919876543210"),
        ("441642672351", "IN", "+441642672351"),
    ],
)
def test_phone_whose_plus_a_spreadsheet_dropped_is_read(
    raw: str, region: str, expected: str
) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9.19876543210E+11", "+919876543210"),
        ("9,19876543210E+11", "+919876543210"),
        ("9.876543210E+9", "+919876543210"),
        ("9876543210.0", "+919876543210"),
        ("919876543210.00", "+919876543210"),
    ],
)
def test_phone_turned_into_a_float_by_a_spreadsheet_is_read(raw: str, expected: str) -> None:
    assert normalize_phone(raw, "IN") == expected


def test_phone_rounded_by_scientific_notation_is_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        normalize_phone("9.19877E+11", "IN")
    assert "rounded by a spreadsheet" in caught.value.reason
    assert "6 of its 12 digits" in caught.value.reason


def test_phone_with_plus_but_no_country_code_is_refused_with_a_suggestion() -> None:
    with pytest.raises(InvalidValue) as caught:
        normalize_phone("+339614718", "SN")  # St-Louis: Senegal number, 221 left out
    reason = caught.value.reason
    assert reason.startswith("phone number '+339614718' is not valid for any region")
    assert "+33 is FR" in reason
    assert "write +221339614718" in reason


def test_phone_with_plus_but_no_country_code_gets_no_suggestion_outside_its_region() -> None:
    with pytest.raises(InvalidValue) as caught:
        normalize_phone("+339614718", "IN")
    assert "write" not in caught.value.reason


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("01534 58048", "GB", "is not a valid GB number"),  # epraccur, old Jersey number
        ("672351", "GB", "a local number without its area code"),
        ("98765", "IN", "too short"),
        ("+44 1642 672351 ext 12", "GB", "has an extension"),
        ("N/A", "IN", "contains 'N'"),
        ("1-800-FLOWERS", "IN", "contains 'F'"),
        ("+999 123456789", "IN", "country code"),
        ("--", "IN", "has no digits"),
        ("9.8765432101E+9", "IN", "has a fraction"),
    ],
)
def test_normalize_phone_refuses(raw: str, region: str, reason: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        normalize_phone(raw, region)
    assert reason in caught.value.reason
    assert repr(raw) in caught.value.reason


def test_normalize_phone_with_unknown_region_is_a_caller_error() -> None:
    with pytest.raises(ValueError) as caught:
        normalize_phone("9876543210", "XX")
    assert not isinstance(caught.value, InvalidValue)


def test_phone_field_uses_its_region_option_over_the_default() -> None:
    parse = parser(FieldType.PHONE, {"region": "SN"}, default_region="IN")
    assert parse("33 961 27 27") == "+221339612727"


def test_phone_field_uses_the_default_region_without_option() -> None:
    assert parser(FieldType.PHONE, default_region="GB")("01642 672351") == "+441642672351"


def _epraccur_phones() -> list[str]:
    with (REAL / "epraccur.csv").open(newline="", encoding="ascii") as handle:
        return [row[17] for row in csv.reader(handle) if row[17].strip()]


def test_nearly_every_epraccur_phone_normalises_and_every_failure_says_why() -> None:
    phones = _epraccur_phones()
    assert len(phones) == 14357 - 268
    normalised: list[str] = []
    failures: list[str] = []
    for raw in phones:
        try:
            normalised.append(normalize_phone(raw, "GB"))
        except InvalidValue as exc:
            failures.append(exc.reason)
    assert len(normalised) / len(phones) >= 0.99
    assert all(E164.fullmatch(phone) and phone.startswith("+44") for phone in normalised)
    assert failures
    assert all(reason.startswith("phone number '0") for reason in failures)


def test_every_st_louis_phone_with_its_country_code_normalises() -> None:
    path = REAL / "St-Louis-Data-Collection-Campaign-Gth_Hs_Osm_11.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        phones = [row["Phone Number"] for row in csv.DictReader(handle)]
    parse = parser(FieldType.PHONE, {"region": "SN"})
    with_code = [raw for raw in phones if raw.startswith("+221")]
    assert len(with_code) == 57
    assert all(parse(raw) == raw for raw in with_code)
    without_code = [raw for raw in phones if raw.startswith("+33")]
    assert len(without_code) == 4
    assert all("country code" in reason_of(parse, raw) for raw in without_code)


# --------------------------------------------------------------------- member phones


def test_member_phones_split_on_every_separator() -> None:
    cell = "9876543210; +91 98765 43211 | 098765 43212,\n9876543213\r\n9876543214"
    assert parse_member_phones(cell, "IN") == [
        "+919876543210",
        "+919876543211",
        "+919876543212",
        "+919876543213",
        "+919876543214",
    ]


def test_member_phones_are_deduplicated_in_order() -> None:
    cell = "01642 672351; 01429 272945; +44 1642 672351; 01642672351"
    assert parse_member_phones(cell, "GB") == ["+441642672351", "+441429272945"]


def test_member_phones_keep_a_decimal_comma_in_scientific_notation() -> None:
    assert parse_member_phones("9,19876543210E+11, 9876543211", "IN") == [
        "+919876543210",
        "+919876543211",
    ]


@pytest.mark.parametrize("cell", ["", "  ", ";", " ; | ,"])
def test_member_phones_of_a_blank_cell_are_an_empty_list(cell: str) -> None:
    assert parse_member_phones(cell, "IN") == []


def test_member_phones_name_the_bad_one() -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_member_phones("+221339612727; +339614718; +221339614802", "SN")
    assert caught.value.reason.startswith("member phone 2 of 3: phone number '+339614718'")


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("\ufeffexternal_id", "external_id"),  # a BOM left on the first header
        ("Block Name ", "block name"),  # blocks.csv, trailing space
        ("  Facility   Location /\tlatitude ", "facility location / latitude"),
        ("Facility\xa0Location", "facility location"),  # NBSP
        ("Facility\u202fLocation", "facility location"),  # narrow NBSP
        ("Facility\u200bLocation", "facilitylocation"),  # zero-width space removed
        ("ＢＬＯＣＫ　ＮＡＭＥ", "block name"),  # full-width letters and space
        ("Straße", "strasse"),
        ("Which days is this facility open?", "which days is this facility open?"),
        ("@id", "@id"),
        ("Village Census 2011 Code", "village census 2011 code"),
    ],
)
def test_normalize_header_folds(header: str, expected: str) -> None:
    assert normalize_header(header) == expected


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("external_id", "external id"),  # underscore is not a space
        ("Ministère", "Ministere"),  # accents are kept
        ("health are", "health area"),
    ],
)
def test_normalize_header_keeps_apart(one: str, other: str) -> None:
    assert normalize_header(one) != normalize_header(other)


def test_normalize_header_keeps_zero_width_joiners_of_indic_scripts() -> None:
    name = "क्\u200dष"  # ZWJ changes how the conjunct is drawn
    assert "\u200d" in normalize_header(name)


def test_normalize_header_is_the_same_for_nfc_and_nfd() -> None:
    name = "ಬ್ಲಾಕ್ ಹೆಸರು ಕೊಟ್ಟೂರು"
    assert normalize_header(unicodedata.normalize("NFD", name)) == normalize_header(name)


def test_the_two_block_name_headers_of_blocks_csv_fold_alike() -> None:
    with (REAL / "blocks.csv").open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    keys = [normalize_header(name) for name in header]
    assert header[-2:] == ["Block Name ", "Block Name"]
    assert keys.count("block name") == 2  # the caller has to report them as ambiguous


# --------------------------------------------------------------------------- selects

CATEGORIES = {"choices": ["clinic", "dentist", "doctors", "hospital", "pharmacy"]}
DAYS = {"choices": ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"]}
SERVICES = {
    "choices": [
        "clinic",
        "doctor",
        "pharmacy",
        "hospital",
        "dentist",
        "laboratory",
        "birthing_center",
    ]
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("pharmacy", "pharmacy"), ("Pharmacy", "pharmacy"), ("  DOCTORS ", "doctors")],
)
def test_select_one_matches_choice_names_forgiving_case_and_space(raw: str, expected: str) -> None:
    assert parser(FieldType.SELECT_ONE, CATEGORIES)(raw) == expected


def test_select_one_refuses_a_value_not_among_the_choices_and_lists_them() -> None:
    reason = reason_of(parser(FieldType.SELECT_ONE, CATEGORIES), "pharmacie")
    assert reason == (
        "'pharmacie' is not one of the choices: clinic, dentist, doctors, hospital, pharmacy"
    )


@pytest.mark.parametrize(
    "raw",
    [
        "Ministère de la santé et de l'action sociale",  # St-Louis operator names
        "Ministère de la Santé et de l'action sociale",
        "Ministère de la santé  et de l'action sociale",
        "ministry_health",
    ],
)
def test_select_one_matches_labels(raw: str) -> None:
    options = {
        "choices": [
            {"name": "ministry_health", "label": "Ministère de la santé et de l'action sociale"},
            {"name": "ministry_army", "label": {"fr": "Ministère des forces armées"}},
        ]
    }
    assert parser(FieldType.SELECT_ONE, options)(raw) == "ministry_health"


def test_select_one_refuses_a_value_matching_two_choices_once_folded() -> None:
    parse = parser(FieldType.SELECT_ONE, {"choices": ["Yes", "yes", "no"]})
    assert parse("yes") == "yes"
    assert parse("Yes") == "Yes"
    assert "more than one choice" in reason_of(parse, "YES")


def test_select_one_without_choices_keeps_the_value() -> None:
    assert parser(FieldType.SELECT_ONE)(" combination ") == "combination"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Mo Tu We Th Fr Sa Su", ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"]),  # St-Louis
        ("Tu Mo Th", ["Mo", "Tu", "Th"]),  # St-Louis, in the choice list's order
        ("Mo Tu We Th Sa Su Fr", ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"]),
        ("mo, tu;WE", ["Mo", "Tu", "We"]),
        ("Mo Mo  Tu", ["Mo", "Tu"]),
    ],
)
def test_select_multiple_reads_space_separated_choices(raw: str, expected: list[str]) -> None:
    assert parser(FieldType.SELECT_MULTIPLE, DAYS)(raw) == expected


def test_select_multiple_reads_st_louis_services() -> None:
    parse = parser(FieldType.SELECT_MULTIPLE, SERVICES)
    assert parse("doctor pharmacy birthing_center") == ["doctor", "pharmacy", "birthing_center"]
    assert parse("pharmacy doctor") == ["doctor", "pharmacy"]


def test_select_multiple_refuses_an_unknown_item_and_names_it() -> None:
    reason = reason_of(parser(FieldType.SELECT_MULTIPLE, SERVICES), "doctor pharmacie")
    assert reason.startswith("'pharmacie' is not one of the choices (in 'doctor pharmacie')")


def test_select_multiple_takes_a_whole_label_as_one_choice() -> None:
    options = {"choices": [{"name": "health_post", "label": "Poste de santé"}, "pharmacy"]}
    assert parser(FieldType.SELECT_MULTIPLE, options)("Poste de santé") == ["health_post"]


def test_a_select_cell_longer_than_any_match_is_refused_before_any_folding() -> None:
    one = parser(FieldType.SELECT_ONE, {"choices": ["Yes", {"name": "no", "label": "Non"}]})
    many = parser(FieldType.SELECT_MULTIPLE, DAYS)
    longest_one = 4 * 3 + 32  # four characters per character of "Yes", plus 32
    longest_list = 7 * (4 * 2 + 32)  # each of the seven days once

    too_long = reason_of(one, "y" + " " * longest_one + "es")
    assert too_long.startswith(f"too long for one of this field's choices ({longest_one + 3:,} "
                               f"characters, at most {longest_one}): 'y "), too_long
    assert one("\ufeff" * 20 + "yes") == "Yes", "a cell within the bound is folded as before"
    assert many(" ".join(["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"] * 10)) == [
        "Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"]
    assert reason_of(many, "Mo " * longest_list).startswith(  # stripped: one space less
        f"too long for a list of this field's choices ({3 * longest_list - 1:,} characters, "
        f"at most {longest_list:,})")


def test_select_multiple_without_choices_keeps_the_items_in_cell_order() -> None:
    parse = parser(FieldType.SELECT_MULTIPLE)
    assert parse("doctor pharmacy birthing_center doctor") == [
        "doctor",
        "pharmacy",
        "birthing_center",
    ]


# ------------------------------------------------------------------------- geopoints


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("16.03292006 -16.47092303", {"lat": 16.03292006, "lon": -16.47092303}),  # St-Louis
        ("16.06262477,-16.4562459", {"lat": 16.06262477, "lon": -16.4562459}),
        ("16.0645827, -16.45016089", {"lat": 16.0645827, "lon": -16.45016089}),
        (
            "16.03292006 -16.47092303 34 5",
            {"lat": 16.03292006, "lon": -16.47092303, "alt": 34.0, "accuracy": 5.0},
        ),  # ODK form
        ("-90 180", {"lat": -90.0, "lon": 180.0}),
    ],
)
def test_geopoint_accepts(raw: str, expected: dict[str, JSONValue]) -> None:
    assert parser(FieldType.GEOPOINT)(raw) == expected


def test_geopoint_from_the_st_louis_latitude_and_longitude_columns() -> None:
    path = REAL / "St-Louis-Data-Collection-Campaign-Gth_Hs_Osm_11.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    parse = parser(FieldType.GEOPOINT)
    for row in rows:
        lat, lon = row["Facility Location / latitude"], row["Facility Location / longitude"]
        assert parse(f"{lat} {lon}") == {"lat": float(lat), "lon": float(lon)}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("96.1 16.03", "are latitude and longitude swapped?"),
        ("16.03 -196.47", "longitude -196.47 is outside -180..180"),
        ("16,03 -16,47", "not a point"),
        ("16.03292006", "not a point"),
        ("Saint-Louis", "not a point"),
    ],
)
def test_geopoint_refuses(raw: str, reason: str) -> None:
    assert reason in reason_of(parser(FieldType.GEOPOINT), raw)


# ---------------------------------------------------------------------- field specs


@pytest.mark.parametrize(
    ("field_type", "options", "message"),
    [
        (FieldType.DATETIME, {"timeZone": "India/Bangalore"}, "not an IANA time zone"),
        (FieldType.PHONE, {"region": "XX"}, "not a phone region"),
        (FieldType.DECIMAL, {"decimalSeparator": ";"}, "decimalSeparator"),
        (FieldType.DATE, {"dayfirst": "yes"}, "dayfirst"),
        (FieldType.DATE, {"format": "DD/MM/YYYY"}, "strptime"),
        (FieldType.SELECT_ONE, {"choices": "a b"}, "must be a list"),
        (FieldType.SELECT_ONE, {"choices": ["a", "a"]}, "listed twice"),
        (FieldType.SELECT_MULTIPLE, {"choices": [{"label": "x"}]}, "a choice must be"),
    ],
)
def test_bad_field_options_are_refused_before_any_cell(
    field_type: FieldType, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidFieldSpec) as caught:
        parser(field_type, options)
    assert message in str(caught.value)
    assert "'field'" in str(caught.value)


def test_unknown_field_type_is_refused() -> None:
    spec = FieldSpec("rating", "stars", False, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidFieldSpec, match="unknown type 'stars'"):
        make_parser(spec)


def test_field_type_may_be_given_as_its_database_string() -> None:
    spec = FieldSpec("beds", "integer", True, None)  # type: ignore[arg-type]
    assert make_parser(spec)("40") == 40


def test_unknown_option_keys_are_left_alone() -> None:
    assert parser(FieldType.INTEGER, {"hint": "beds", "min": 0})("7") == 7


# ------------------------------------------------------------------ column by column

CELLS = ["", "  ", "abc", " padded ", "x\r\ny", "nul\x00", "caf\u00e9", "cafe\u0301",
         "\u0915\u0928\u094d\u0928\u0921", "\u0301lead", "007", "42", " 12 ", "-5", "1,234",
         "\u0967\u0968", "7.0", "12345678901234567", "1e3", "\u00a0", "\u200b9\u200b",
         "true", "2019-07-18", "yes"]


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(st.sampled_from(CELLS), max_size=12),
       field_type=st.sampled_from([FieldType.TEXT, FieldType.INTEGER, FieldType.BOOLEAN]),
       required=st.booleans())
def test_a_column_reads_as_its_cells_do(cells: list[str], field_type: FieldType,
                                        required: bool) -> None:
    spec = FieldSpec("f", field_type, required)
    one = make_parser(spec)
    want_values: list[JSONValue] = []
    want_bad: dict[int, str] = {}
    for i, cell in enumerate(cells):
        try:
            want_values.append(one(cell))
        except InvalidValue as exc:
            want_values.append(None)
            want_bad[i] = exc.reason
    values, bad = make_column_parser(spec)(cells)
    assert (values, bad) == (want_values, want_bad)
    assert [type(v) for v in values] == [type(v) for v in want_values]


def test_cells_are_stripped_of_every_space_plus_zero_width_space_and_bom() -> None:
    # make_column_parser relies on it: without U+200B and U+FEFF in a column, str.strip()
    # removes exactly these characters.
    from longtask.values import _STRIP

    spaces = {chr(i) for i in range(sys.maxunicode + 1) if chr(i).isspace()}
    assert set(_STRIP) == spaces | {"\u200b", "\ufeff"}


# ------------------------------------------------------------------ hostile cell lengths

# Cells a pattern could spend time on: long runs of spaces between digits (a datetime cell
# of "1" + 40,000 spaces + "1" took 22 s before the bound), digits, separators, words.
HOSTILE = {
    "spaces": lambda n: "1" + " " * (n - 2) + "1",
    "digits": lambda n: "1" * n,
    "colons": lambda n: ("1:" * n)[:n],
    "dashes": lambda n: ("1-" * n)[:n],
    "words": lambda n: ("Jan 1 " * n)[: n - 1] + "x",
}
"""Makers of a cell of exactly ``n`` characters, none of them blank at either end."""


@pytest.mark.parametrize("field_type", sorted(MAX_CELL_LENGTH))
def test_a_typed_cell_longer_than_its_bound_is_refused_before_it_is_read(
        field_type: FieldType) -> None:
    limit = MAX_CELL_LENGTH[field_type]
    parse = make_parser(FieldSpec("f", field_type))

    for name, make in HOSTILE.items():
        with pytest.raises(InvalidValue) as refused:
            parse(make(limit + 1))
        assert refused.value.reason.startswith(f"too long for a {field_type.value} value ("), (
            name, refused.value.reason)
        assert f"at most {limit})" in refused.value.reason


@pytest.mark.parametrize("field_type", sorted(MAX_CELL_LENGTH))
def test_a_cell_at_its_bound_is_read_by_the_type_rules(field_type: FieldType) -> None:
    parse = make_parser(FieldSpec("f", field_type))
    cell = HOSTILE["spaces"](MAX_CELL_LENGTH[field_type])

    try:
        parse(cell)
    except InvalidValue as exc:
        assert not exc.reason.startswith("too long"), exc.reason


def test_the_bound_counts_the_cell_after_its_spaces_are_stripped() -> None:
    parse = make_parser(FieldSpec("f", FieldType.DATE))

    assert parse(" " * 10_000 + "2019-07-18" + "\u00a0" * 10_000) == "2019-07-18"


@pytest.mark.parametrize("field_type", list(FieldType))
def test_every_field_type_reads_100k_character_hostile_cells(field_type: FieldType) -> None:
    options = {"choices": ["a", "b"]} if field_type.value.startswith("select") else None
    parse = make_parser(FieldSpec("f", field_type, options=options))

    for make in HOSTILE.values():
        try:
            value = parse(make(100_000))
        except InvalidValue as exc:
            assert exc.reason
        else:
            assert field_type in (FieldType.TEXT, FieldType.SELECT_ONE,
                                  FieldType.SELECT_MULTIPLE), (field_type, str(value)[:80])
