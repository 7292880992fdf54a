"""Sign-in sessions: one row per sign-in, and the signed token the cookie carries.

The token (an HS256 JWT signed with the cookie key) names the user and the session, and
expires with the session. It is honoured only while its row is live: not expired, not
revoked. The app checks that on every script run, so a copied cookie stops working with
sign-out, a password reset, revoke-admin or "sign out everywhere", whatever the token's own
expiry says. The row stores a hash of the session id, never the id itself.

Everything here runs as the service identity (sign-in does; nothing is granted to
`authenticated` on gemini_user_sessions).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

import jwt
from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from db.models import UserSession

SIGNING_ALGORITHM = "HS256"  # the only one read_token accepts ("none", RS256, ... are refused)
MAX_TOKEN_LENGTH = 2048
SESSION_ID_BYTES = 32
# A sign-in that is not remembered by a cookie still ends: after this long, or at sign-out.
UNREMEMBERED_LIFETIME = dt.timedelta(hours=12)
KEEP_ENDED_FOR = dt.timedelta(days=1)  # ended rows are deleted after this (the table stays small)


@dataclass(frozen=True)
class TokenClaims:
    """What a validly signed, unexpired token says (not yet checked against its row)."""

    user_id: uuid.UUID
    session_id: str
    remember: bool  # False: the cookie may authorise downloads but not restore a sign-in


@dataclass(frozen=True)
class LiveSession:
    user_id: uuid.UUID
    email: str
    expires_at: dt.datetime  # naive UTC


def session_lifetime(expiry_days: float) -> dt.timedelta:
    """How long a new session lives: the cookie's lifetime, or UNREMEMBERED_LIFETIME."""
    return dt.timedelta(days=expiry_days) if expiry_days > 0 else UNREMEMBERED_LIFETIME


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _now(session: Session) -> dt.datetime:
    return session.scalar(text("SELECT localtimestamp"))


def start_session(session: Session, user_id: uuid.UUID, *, lifetime: dt.timedelta,
                  client_address: str | None = None) -> tuple[str, dt.datetime]:
    """A new live session for `user_id`: (its secret id, when it expires, naive UTC)."""
    now = _now(session)
    cutoff = now - KEEP_ENDED_FOR
    session.execute(delete(UserSession).where(
        or_(UserSession.expires_at < cutoff, UserSession.revoked_at < cutoff)))
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    expires_at = now + lifetime
    session.add(UserSession(user_id=user_id, token_hash=_hash(session_id),
                            client_address=(client_address or "")[:64] or None,
                            expires_at=expires_at))
    session.flush()
    return session_id, expires_at


def live_session(session: Session, session_id: str | None) -> LiveSession | None:
    """The session's user while the session is live, else None."""
    if not session_id:
        return None
    row = session.execute(
        select(UserSession.user_id,
               func.public.gemini_auth_user_email(UserSession.user_id).label("email"),
               UserSession.expires_at)
        .where(UserSession.token_hash == _hash(session_id), UserSession.revoked_at.is_(None),
               UserSession.expires_at > text("localtimestamp"))).one_or_none()
    if row is None or not row.email:
        return None
    return LiveSession(row.user_id, row.email.lower(), row.expires_at)


def end_session(session: Session, session_id: str | None) -> bool:
    """Revoke one session (sign-out); whether it was live."""
    if not session_id:
        return False
    result = session.execute(
        update(UserSession).where(UserSession.token_hash == _hash(session_id),
                                  UserSession.revoked_at.is_(None))
        .values(revoked_at=text("localtimestamp")))
    return bool(result.rowcount)


def end_user_sessions(session: Session, user_id: uuid.UUID) -> int:
    """Revoke every live session of a user; how many were live (callers audit the change)."""
    result = session.execute(
        update(UserSession).where(UserSession.user_id == user_id,
                                  UserSession.revoked_at.is_(None),
                                  UserSession.expires_at > text("localtimestamp"))
        .values(revoked_at=text("localtimestamp")))
    return int(result.rowcount or 0)


def issue_token(key: str, *, user_id: uuid.UUID, session_id: str, expires_at: dt.datetime,
                remember: bool) -> str:
    """The cookie's value: a JWT naming user and session, expiring with the session."""
    claims = {"sub": str(user_id), "sid": session_id, "rem": remember,
              "exp": expires_at.replace(tzinfo=dt.UTC)}
    return jwt.encode(claims, key, algorithm=SIGNING_ALGORITHM)


def read_token(key: str, token: str | None) -> TokenClaims | None:
    """The claims of a token we signed that has not expired; None for anything else (no
    token, garbage, a bad header, another algorithm, a bad signature, expired, odd claims),
    so a malformed cookie means "signed out", never an error page."""
    if not token or not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        claims = jwt.decode(token, key, algorithms=[SIGNING_ALGORITHM],
                            options={"require": ["exp", "sub", "sid"]})
        user_id = uuid.UUID(str(claims["sub"]))
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError):
        return None
    session_id = claims.get("sid")
    if not isinstance(session_id, str) or not 0 < len(session_id) <= 128:
        return None
    return TokenClaims(user_id, session_id, claims.get("rem") is True)


def session_for_token(session: Session, key: str, token: str | None) -> tuple[
        TokenClaims, LiveSession] | None:
    """A token's claims and its live session, when both hold and name the same user."""
    claims = read_token(key, token)
    if claims is None:
        return None
    live = live_session(session, claims.session_id)
    if live is None or live.user_id != claims.user_id:
        return None
    return claims, live
