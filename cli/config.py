"""Where the command finds the API and its token: options, environment, config file.

The config file is ``$XDG_CONFIG_HOME/longtask/config.toml`` (``~/.config/...`` when the
variable is unset; XDG Base Directory Specification), written by ``longtask login`` with
mode 0600 in a folder of mode 0700. ``LONGTASK_API_URL`` and ``LONGTASK_TOKEN`` win over
the file; ``--api-url`` wins over both. A config file that others may read is refused,
as ssh refuses such a key.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from longtask.cli.errors import NotLoggedIn, UsageError

ENV_URL = "LONGTASK_API_URL"
ENV_TOKEN = "LONGTASK_TOKEN"


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/longtask/config.toml`` (default ``~/.config/longtask/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "longtask" / "config.toml"


@dataclass(frozen=True)
class Credentials:
    """The API's base URL and the bearer token, and where each came from."""

    url: str
    token: str
    url_from: str
    token_from: str


def read_file(path: Path) -> dict[str, str]:
    """The ``api_url`` and ``token`` keys of the config file ({} when there is none).

    Raises :class:`UsageError` for a file others may read or that is not TOML, naming the
    file (and tomllib's line and column).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"{path} may be read by others (mode {stat.S_IMODE(mode):04o}): it "
                         f"holds a token; run chmod 600 {path}, or longtask login again")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a TOML file: {exc}") from None
    return {key: value for key, value in data.items()
            if key in ("api_url", "token") and isinstance(value, str)}


def resolve(api_url: str | None) -> Credentials:
    """The credentials to use: ``api_url`` (the option), else ``$LONGTASK_API_URL``, else
    the file; the token from ``$LONGTASK_TOKEN``, else the file.

    Raises :class:`NotLoggedIn` when a URL or token is found nowhere.
    """
    path = config_path()
    env_url, env_token = os.environ.get(ENV_URL), os.environ.get(ENV_TOKEN)
    stored = read_file(path) if not (env_token and (api_url or env_url)) else {}
    url, url_from = ((api_url, "--api-url") if api_url else (env_url, ENV_URL) if env_url
                     else (stored.get("api_url"), str(path)))
    token, token_from = ((env_token, ENV_TOKEN) if env_token
                         else (stored.get("token"), str(path)))
    if not url or not token:
        missing = "API URL" if not url else "token"
        raise NotLoggedIn(f"no {missing}: run `longtask login`, or set {ENV_URL} and "
                          f"{ENV_TOKEN}")
    return Credentials(url.rstrip("/"), token, url_from, token_from)


def write_file(path: Path, api_url: str, token: str) -> None:
    """Write the config file with mode 0600 (its folder 0700), atomically: a reader sees
    the old file or the new one, never a part, and never one others may read."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # TOML basic strings take JSON's escapes (TOML 1.0, "String").
    text = f"api_url = {json.dumps(api_url)}\ntoken = {json.dumps(token)}\n"
    fd, temp = tempfile.mkstemp(prefix=".config-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def remove_file(path: Path) -> bool:
    """Remove the config file; False when there was none."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
