"""The ``longtask`` command: a client of the LongTask REST API for pipelines and support staff.

It speaks only the API's HTTP interface (``httpx``) and imports nothing of the API, the
operator or the runner (``tests/test_layout.py``); whatever the API decides (rules, phases,
finality, checksums) the command shows as the API answered it. See ``cli/README.md``.
"""
