"""Passwords never written down: storage URLs with one are refused, and every URL is redacted.

hpwf keeps a storage URL in ``run.json`` (for ``hpwf resume``), in ``job.sh`` (for the job)
and on the ranks' command lines, so a URL that carried a password would leave it on disk, in
``ps`` and in logs. A password belongs in ``~/.pgpass`` or ``PGPASSWORD`` instead, where the
database driver (libpq) finds it by itself when the URL has none.

Example:
    >>> redact("cannot open postgresql://alice:s3cret@db.example/hpwf")
    'cannot open postgresql://alice:***@db.example/hpwf'
    >>> has_password("postgresql://alice@db.example/hpwf")
    False
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hpwf.errors import ConfigError

MASK = "***"
# scheme://user:PASSWORD@host: the password runs to the last "@" before the host's end.
_USERINFO = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s/?#:@'\"]*):([^\s/?#'\"]+)@")
# ...?password=PASSWORD&... (SQLAlchemy and libpq accept it as a query parameter too)
_QUERY = re.compile(r"([?&](?:password|passwd|pwd|sslpassword)=)[^&\s'\"#]+", re.IGNORECASE)
_QUERY_KEYS = ("password", "passwd", "pwd", "sslpassword")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    if "://" not in text:
        return text
    return _QUERY.sub(lambda m: m.group(1) + MASK, _USERINFO.sub(lambda m: f"{m.group(1)}:{MASK}@", text))


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (``user:pw@host`` or a ``password=`` parameter)."""
    if "://" not in url:
        return False
    try:
        parts = urlsplit(url)
        password = parts.password
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:  # a malformed URL: judge by the text
        return redact(url) != url
    return bool(password) or any(key.lower() in _QUERY_KEYS and value for key, value in query)


def refuse_password(url: str | None, where: str) -> None:
    """Raise `ConfigError` (exit 2) when the storage URL ``url`` holds a password.

    Args:
        url: a storage URL, or None.
        where: what gave it, for the message (``--storage``, ``site.yaml: storage``).
    """
    if url is None or not has_password(url):
        return
    raise ConfigError(
        f"{where} {redact(url)}: hpwf never writes a password down (run.json, job.sh, the ranks' command "
        f"lines); give {strip_password(url)} and put the password in ~/.pgpass (chmod 600) or the PGPASSWORD "
        "environment variable"
    )


def strip_password(url: str) -> str:
    """``url`` without its password (the user name stays, for ``~/.pgpass`` to match)."""
    if not has_password(url):
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            netloc = userinfo.split(":", 1)[0] + "@" + host
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in _QUERY_KEYS]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))
    except ValueError:
        return redact(url)
