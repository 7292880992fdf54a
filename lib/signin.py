"""Password sign-in with throttling, and the sign-in cookie's settings (plain Python).

The password is checked here, never by streamlit-authenticator: its own login form keeps its
failure counter in process memory and would verify a password before our lock could refuse
it. The authenticator only signs, sets, reads and deletes the "remember me" cookie.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import os
import secrets
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from db.models import AuthUser, SignInAttempt
from lib.audit import Action, write_audit
from lib.config import MIN_COOKIE_KEY_BYTES, Settings, looks_like_placeholder
from lib.errors import ConfigurationError, InvalidInput
from lib.secret_files import publish_secret_file
from lib.users import bcrypt_rounds, find_user, normalise_email, password_matches

log = logging.getLogger("gemini_keys")

COOKIE_NAME = "gemini_keys_auth"
COOKIE_KEY_FILENAME = "cookie.key"
WRONG_CREDENTIALS = "Email or password is incorrect."
GENERATE_COOKIE_KEY_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


@dataclass(frozen=True)
class Throttle:
    """`max_failures` failed sign-ins within `window` lock the account for `lock`."""

    max_failures: int = 5
    window: dt.timedelta = dt.timedelta(minutes=15)
    lock: dt.timedelta = dt.timedelta(minutes=15)


THROTTLE = Throttle()


@dataclass(frozen=True)
class SignInResult:
    email: str
    user_id: uuid.UUID | None = None
    locked_until: dt.datetime | None = None  # naive UTC
    message: str = WRONG_CREDENTIALS

    @property
    def ok(self) -> bool:
        return self.user_id is not None


@functools.cache
def _dummy_hash(rounds: int) -> str:
    # Checked against for unknown emails, so they cost as much time as a wrong password.
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds)).decode()


def db_now(session: Session) -> dt.datetime:
    """The database's clock as naive UTC (connections run with timezone=UTC)."""
    return session.scalar(text("SELECT localtimestamp"))


def locked_until(session: Session, email: str, *, now: dt.datetime,
                 throttle: Throttle = THROTTLE) -> dt.datetime | None:
    """When the account's lock ends, or None if it is not locked at `now`.

    Only failures after the last successful sign-in count. A lock starts at the failure that
    made `max_failures` within `window`, and lasts `lock` from there.
    """
    since = now - throttle.window - throttle.lock
    last_success = session.scalar(
        select(func.max(SignInAttempt.attempted_at))
        .where(func.lower(SignInAttempt.email) == email, SignInAttempt.succeeded.is_(True)))
    if last_success is not None and last_success > since:
        since = last_success
    failures = session.scalars(
        select(SignInAttempt.attempted_at)
        .where(func.lower(SignInAttempt.email) == email, SignInAttempt.succeeded.is_(False),
               SignInAttempt.attempted_at > since, SignInAttempt.attempted_at <= now)
        .order_by(SignInAttempt.attempted_at)).all()
    n = throttle.max_failures
    until = None
    for i in range(n - 1, len(failures)):
        if failures[i] - failures[i - n + 1] <= throttle.window:
            until = failures[i] + throttle.lock
    return until if until is not None and until > now else None


def lock_message(until: dt.datetime, now: dt.datetime) -> str:
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    return (f"Too many failed sign-ins for this account: it is locked for {minutes} more "
            f"minute{'s' if minutes != 1 else ''}. Try again later, or ask an admin to reset "
            "your password.")


def sign_in(session: Session, email: str, password: str, *, now: dt.datetime | None = None,
            throttle: Throttle = THROTTLE) -> SignInResult:
    """Check the lock, then the password; record the attempt (never the password) and audit
    a failure. Returns the outcome instead of raising, so the caller commits the record.

    Raises InvalidInput (nothing recorded) for a malformed email or an empty password.
    """
    email = normalise_email(email)
    if not password:
        raise InvalidInput("Enter your password.")
    # One attempt per account at a time, so parallel guesses cannot slip past the count.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                    {"k": f"gemini-keys-sign-in:{email}"})
    now = now or db_now(session)
    until = locked_until(session, email, now=now, throttle=throttle)
    if until is not None:
        # Refused without checking the password, and not counted (it would extend the lock).
        write_audit(session, action=Action.SIGN_IN_FAILED,
                    details={"email": email, "reason": "locked", "locked_until": until.isoformat()})
        return SignInResult(email, locked_until=until, message=lock_message(until, now))

    user = find_user(session, email)
    stored = user.encrypted_password if user else _dummy_hash(bcrypt_rounds())
    matched = password_matches(password, stored)
    ok = user is not None and matched
    session.add(SignInAttempt(email=email, succeeded=ok, attempted_at=now))
    session.flush()
    if ok:
        session.execute(update(AuthUser).where(AuthUser.id == user.id)
                        .values(last_sign_in_at=func.now()))
        return SignInResult(email, user_id=user.id, message="Signed in.")

    reason = "wrong_password" if user is not None else "unknown_email"
    until = locked_until(session, email, now=now, throttle=throttle)
    if until is None:
        write_audit(session, action=Action.SIGN_IN_FAILED,
                    details={"email": email, "reason": reason})
        return SignInResult(email)
    write_audit(session, action=Action.ACCOUNT_LOCKED,
                details={"email": email, "reason": reason, "failures": throttle.max_failures,
                         "locked_until": until.isoformat()})
    return SignInResult(email, locked_until=until,
                        message=f"{WRONG_CREDENTIALS} {lock_message(until, now)}")


# -- the sign-in cookie ------------------------------------------------------------------------

@dataclass(frozen=True)
class CookieSettings:
    name: str
    key: str = field(repr=False)
    expiry_days: float
    login_sleep_seconds: float
    dev_key: bool  # generated under the data directory


def _number(settings: Settings, name: str, *, minimum: float, maximum: float) -> float:
    raw = settings.get(name)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number (got {raw[:20]!r})") from None
    if not minimum <= value <= maximum:  # also refuses nan
        raise ConfigurationError(f"{name} must be between {minimum:g} and {maximum:g}")
    return value


def _create_dev_cookie_key(path: Path) -> None:
    if publish_secret_file(path, secrets.token_urlsafe(48)):
        log.warning("DEVELOPMENT cookie key generated at %s; set GEMINI_KEYS_COOKIE_KEY in "
                    "production", path)


def _read_dev_cookie_key(path: Path) -> str:
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode) or (os.name != "nt" and mode & 0o077):
        raise ConfigurationError(
            f"development cookie key {path} must be a regular file readable by its owner "
            f"only: chmod 600 {path}")
    key = path.read_text(encoding="ascii").strip()
    if len(key.encode()) < MIN_COOKIE_KEY_BYTES:
        raise ConfigurationError(f"development cookie key {path} is too short; delete it "
                                 "and restart to generate a new one")
    return key


def cookie_key(settings: Settings) -> tuple[str, bool]:
    """(key, is_dev): GEMINI_KEYS_COOKIE_KEY, or in development a generated key file."""
    configured = settings.get("GEMINI_KEYS_COOKIE_KEY")
    if configured:
        weak = (len(configured.encode()) < MIN_COOKIE_KEY_BYTES
                or looks_like_placeholder(configured))
        if weak and settings.production:
            raise ConfigurationError(
                f"GEMINI_KEYS_COOKIE_KEY must be at least {MIN_COOKIE_KEY_BYTES} random bytes "
                f"and not a placeholder; generate one with {GENERATE_COOKIE_KEY_HINT}")
        if weak:
            log.warning("GEMINI_KEYS_COOKIE_KEY is short or looks like a placeholder; it would "
                        "be refused in production")
        return configured, False
    if settings.production:
        raise ConfigurationError("GEMINI_KEYS_ENV=production needs GEMINI_KEYS_COOKIE_KEY; "
                                 f"generate one with {GENERATE_COOKIE_KEY_HINT}")
    directory = settings.data_dir
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / COOKIE_KEY_FILENAME
    if not path.exists():
        _create_dev_cookie_key(path)
    return _read_dev_cookie_key(path), True


def load_cookie_settings(settings: Settings) -> CookieSettings:
    key, is_dev = cookie_key(settings)
    return CookieSettings(
        name=COOKIE_NAME,
        key=key,
        expiry_days=_number(settings, "GEMINI_KEYS_COOKIE_EXPIRY_DAYS", minimum=0, maximum=365),
        login_sleep_seconds=_number(settings, "GEMINI_KEYS_LOGIN_SLEEP_SECONDS",
                                    minimum=0, maximum=10),
        dev_key=is_dev,
    )
