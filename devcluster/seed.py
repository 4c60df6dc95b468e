"""Synthetic Collect data for tests, the demo and the benchmarks: submissions at scale.

Submissions are made inside PostgreSQL (``generate_series``), so millions of rows take
seconds and never pass through Python.
"""

from __future__ import annotations

import datetime as dt

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
