"""Errors an operator can act on: what failed, in one line, and which setting to check.

The CLI prints these instead of a traceback; pages show them to signed-in admins (visitors
see only "temporarily unavailable"). Messages carry PostgreSQL's own words (its primary
message, never statement parameters), never a password, and are redacted once more.
"""

from __future__ import annotations

import errno
import re

from sqlalchemy.exc import ArgumentError, DBAPIError

from lib.errors import GeminiKeysError
from lib.redact import redact

URL_HINT = "check DATABASE_URL"
DATA_DIR_HINT = "check GEMINI_KEYS_DATA_DIR (default ./.data)"

# libpq's connection failures carry no SQLSTATE: they are told apart by their words.
_WHERE = re.compile(r'connection to server (?:at "(?P<host>[^"]+)", port (?P<port>\d+)'
                    r'|on socket "(?P<socket>[^"]+)")')
_CONNECTION_PROBLEMS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Connection refused"),
     "connection refused: is PostgreSQL running there and listening on that port?"),
    (re.compile(r'database "(?P<name>[^"]+)" does not exist'),
     "the database {name!r} does not exist: create it, or fix the database name"),
    (re.compile(r'password authentication failed for user "(?P<name>[^"]+)"'),
     "password authentication failed for user {name!r}: fix the password"),
    (re.compile(r'role "(?P<name>[^"]+)" does not exist'),
     "the login {name!r} does not exist on that server: fix the user name"),
    (re.compile(r'no pg_hba.conf entry for host "(?P<name>[^"]+)"'),
     "the server refuses connections from {name} (pg_hba.conf)"),
    (re.compile(r'could not translate host name "(?P<name>[^"]+)"'),
     "the host name {name!r} is unknown: fix the host"),
    (re.compile(r"timeout expired|timed out", re.IGNORECASE),
     "timed out connecting: is the host reachable from here?"),
    (re.compile(r"No such file or directory"),
     "no server on that socket: is PostgreSQL running?"),
    (re.compile(r"the database system is (?:starting up|shutting down|in recovery mode)"),
     "the database server is restarting: try again in a moment"),
    (re.compile(r"server closed the connection unexpectedly|terminating connection"),
     "the database server closed the connection (restarted or crashed): try again"),
]
_SQLSTATE_HINTS = {
    "42501": "the database login lacks a privilege; run `python -m lib.cli init-db` with "
             "the owner's login, or fix the grants",
    "53100": "the database server's disk is full: free space there",
    "53200": "the database server is out of memory",
    "57P03": "the database server is not accepting connections yet: try again in a moment",
    "3D000": f"the database does not exist: {URL_HINT}",
    "42P01": "a table is missing: run `python -m lib.cli init-db`",
    "3F000": "a schema is missing: run `python -m lib.cli init-db`",
}


class OperatorError(GeminiKeysError):
    """A deployment problem described for the operator (already one redacted line)."""


def _where(text: str) -> str:
    m = _WHERE.search(text)
    if m is None:
        return "the database"
    if m.group("socket"):
        return f"the database on socket {m.group('socket')}"
    return f"the database at {m.group('host')}:{m.group('port')}"


def primary_message(error: DBAPIError) -> str:
    """PostgreSQL's primary message (no DETAIL, no statement, no parameters)."""
    diag = getattr(error.orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return primary
    return str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else ""


def describe_database_error(error: DBAPIError) -> str:
    """One line for a database error: its cause in PostgreSQL's words and what to check."""
    code = getattr(error.orig, "pgcode", None)
    if code is None:  # a connection failure: libpq's words only
        text = str(error.orig)
        for pattern, problem in _CONNECTION_PROBLEMS:
            match = pattern.search(text)
            if match:
                return redact(f"cannot connect to {_where(text)}: "
                              f"{problem.format(**match.groupdict())}; {URL_HINT}")
        first = text.strip().splitlines()[0] if text.strip() else type(error.orig).__name__
        return redact(f"cannot use {_where(text)}: {first}; {URL_HINT}")
    hint = _SQLSTATE_HINTS.get(code, "")
    return redact(f"database error: {primary_message(error)} (SQLSTATE {code})"
                  + (f"; {hint}" if hint else ""))


def describe_os_error(error: OSError) -> str:
    """One line for a file-system error (the data directory, an export file)."""
    where = f" {error.filename}" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return redact(f"no space left on the device{where}: free space, or choose another "
                      "place for the file")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return redact(f"not allowed to write{where}: fix its permissions, or {DATA_DIR_HINT}")
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        return redact(f"{where.strip() or 'a path'} is a file where a directory is needed: "
                      f"{DATA_DIR_HINT}")
    if error.errno == errno.ENOENT:
        return redact(f"cannot create{where}: its parent does not exist or takes no new "
                      f"entries: {DATA_DIR_HINT}")
    return redact(f"{error.strerror or type(error).__name__}{where}")


def describe(error: BaseException) -> str | None:
    """The operator's one line for `error`, or None when it is not a deployment problem."""
    if isinstance(error, DBAPIError):
        return describe_database_error(error)
    if isinstance(error, ArgumentError):
        return ("DATABASE_URL is not a database URL (expected "
                "postgresql://USER:PASSWORD@HOST:PORT/DATABASE)")
    if isinstance(error, OSError):
        return describe_os_error(error)
    return None
