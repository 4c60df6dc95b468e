"""Synthetic Collect data for tests, the demo, the examples and the benchmarks:
organizations, forms, and submissions at scale.

Submissions are made inside PostgreSQL (``generate_series``), so millions of rows take
seconds and never pass through Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import psycopg2.extensions

SUBMISSION_FIELDS = (
    ("respondent", "text", True, None),
    ("village", "text", False, None),
    ("household_size", "integer", False, None),
    ("visited_on", "date", False, None),
    ("phone", "phone", False, None),
    ("services", "select_multiple", False, None),
    ("location", "geopoint", False, None),
)


def organization(conn: psycopg2.extensions.connection, slug: str) -> int:
    """The id of organization ``slug``, made (named after the slug) when it is missing."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO collect.organizations (slug, name) VALUES (%s, %s) "
                    "ON CONFLICT (slug) DO NOTHING", (slug, slug.replace("-", " ").title()))
        cur.execute("SELECT id FROM collect.organizations WHERE slug = %s", (slug,))
        org_id = int(cur.fetchone()[0])  # type: ignore[index]
    if not conn.autocommit:
        conn.commit()
    return org_id


def form(conn: psycopg2.extensions.connection, organization_id: int, name: str,
         fields: Sequence[tuple[str, str, bool]]) -> int:
    """Create form ``name`` with ``(field name, type, required)`` fields in that order
    (types of :class:`longtask.values.FieldType`); returns its id."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO collect.forms (organization_id, name) VALUES (%s, %s) RETURNING id",
            (organization_id, name),
        )
        form_id = int(cur.fetchone()[0])  # type: ignore[index]
        for position, (fname, ftype, required) in enumerate(fields):
            cur.execute(
                "INSERT INTO collect.form_fields (form_id, position, name, type, required) "
                "VALUES (%s, %s, %s, %s, %s)", (form_id, position, fname, ftype, required))
    if not conn.autocommit:
        conn.commit()
    return form_id


def submission_form(conn: psycopg2.extensions.connection, organization_id: int,
                    name: str = "household-survey") -> int:
    """Create a survey form with one field of most types; returns its id."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO collect.forms (organization_id, name) VALUES (%s, %s) RETURNING id",
            (organization_id, name),
        )
        form_id = int(cur.fetchone()[0])  # type: ignore[index]
        for position, (fname, ftype, required, options) in enumerate(SUBMISSION_FIELDS):
            cur.execute(
                "INSERT INTO collect.form_fields (form_id, position, name, type, required, "
                "options) VALUES (%s, %s, %s, %s, %s, %s)",
                (form_id, position, fname, ftype, required, options),
            )
    if not conn.autocommit:
        conn.commit()
    return form_id


def submissions(
    conn: psycopg2.extensions.connection,
    organization_id: int,
    form_id: int,
    count: int,
    start: dt.datetime,
    end: dt.datetime,
) -> None:
    """Insert ``count`` submissions spread evenly over ``[start, end)`` (aware datetimes)."""
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO collect.submissions (organization_id, form_id, submitted_at,
                                             submitted_by, data)
            SELECT %(org)s, %(form)s,
                   %(start)s::timestamptz + (%(span)s::float8 * i / %(n)s) * interval '1 second',
                   'worker' || lpad((i %% 9 + 1)::text, 2, '0'),
                   jsonb_build_object(
                       'respondent', 'Respondent ' || i,
                       'village', 'Village, "' || (i %% 977) || '"',
                       'household_size', 1 + i %% 9,
                       'visited_on', to_char(%(start)s::date + (i %% 900), 'YYYY-MM-DD'),
                       'phone', '+9198' || lpad((i %% 100000000)::text, 8, '0'),
                       'services', jsonb_build_array('doctor', 'pharmacy'),
                       'location', jsonb_build_object('lat', 16.03 + (i %% 100) / 1000.0,
                                                      'lon', -16.47))
            FROM generate_series(0, %(n)s - 1) AS i
            """,
            {"org": organization_id, "form": form_id, "start": start,
             "span": (end - start).total_seconds(), "n": count},
        )
    if not conn.autocommit:
        conn.commit()
