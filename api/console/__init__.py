"""The web console: a static page and script (``static/``) served under ``/console/`` that
calls the REST API from the same origin, signed in by a session cookie (:mod:`.session`,
:mod:`.router`)."""
