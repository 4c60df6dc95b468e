"""``python -m longtask.api``: serve the API with uvicorn; ``... token``: make a token.

Settings come from ``LONGTASK_API_*`` (see :class:`longtask.api.settings.ApiSettings`).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence

from longtask.api.auth import Role, hash_token


def _token(args: argparse.Namespace) -> int:
    """Print a new token once, and the entry (with its hash only) for the token Secret."""
    token = secrets.token_urlsafe(32)
    entry = {"sha256": hash_token(token), "subject": args.subject,
             "role": Role.parse(args.role).name.lower(), "organizations": args.organization}
    print(f"token (give it to {args.subject}; it is not stored anywhere): {token}")
    print("entry for the tokens Secret:")
    print(json.dumps(entry))
    return 0


def _serve() -> int:
    import uvicorn
    from longtask.api.app import create_app
    from longtask.api.settings import ApiSettings

    from longtask import logs

    settings = ApiSettings()  # type: ignore[call-arg]  # from the environment
    logs.setup(settings.log_level)
    app = create_app(settings)
    # uvicorn's own access log would print raw request lines; ours is structured.
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False,
                log_config=None, proxy_headers=True, timeout_graceful_shutdown=10)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``longtask-api`` command."""
    parser = argparse.ArgumentParser(prog="longtask-api", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve the API (the default)")
    token = sub.add_parser("token", help="make a bearer token and print its entry")
    token.add_argument("--subject", required=True, help="who holds it, e.g. support-alice")
    token.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    token.add_argument("--organization", action="append", required=True,
                       help="an organization slug (repeat for more; '*' for an admin)")
    args = parser.parse_args(argv)
    if args.command == "token":
        return _token(args)
    return _serve()


if __name__ == "__main__":
    sys.exit(main())
