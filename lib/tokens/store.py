"""Access tokens: create (the plaintext is returned once), list with usage, revoke."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import AccessToken, AccessTokenUsage
from db.session import actor_of
from lib.audit.log import Action, write_audit
from lib.clock import utc_now
from lib.errors import InvalidInput, NotFound
from lib.key_format import ACCESS_TOKEN_PATTERN, ACCESS_TOKEN_PREFIX, looks_like_key
from lib.keys.rules import has_control_chars, is_uuid

NAME_MAX_LENGTH = 100
MAX_MODELS = 50
MAX_EXPIRES_DAYS = 3650
SHOWN_PREFIX_LENGTH = 12  # "gkat_" and 7 random characters: enough to tell tokens apart
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")

# The gateway's per-request statements (psycopg2 %s style), run as service_role.
# A live token by hash: not revoked, not expired; its allow-list (NULL: every model).
VERIFY_SQL = """
SELECT id, name, models FROM gemini_access_tokens
 WHERE token_hash = %s AND revoked_at IS NULL
   AND (expires_at IS NULL OR expires_at > (now() AT TIME ZONE 'UTC'))
"""
# One request of a token: (token id, error 0/1, prompt, output, total tokens).
USAGE_SQL = """
WITH u AS (
  INSERT INTO gemini_access_token_usage AS u
    (token_id, date, request_count, error_count, prompt_tokens, output_tokens, total_tokens,
     last_used_at)
  VALUES (%s, (now() AT TIME ZONE 'UTC')::date, 1, %s, %s, %s, %s, now() AT TIME ZONE 'UTC')
  ON CONFLICT (token_id, date) DO UPDATE SET
    request_count = u.request_count + 1,
    error_count = u.error_count + excluded.error_count,
    prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
    output_tokens = u.output_tokens + excluded.output_tokens,
    total_tokens = u.total_tokens + excluded.total_tokens,
    last_used_at = excluded.last_used_at
  RETURNING token_id, last_used_at
)
UPDATE gemini_access_tokens t SET last_used_at = u.last_used_at FROM u WHERE t.id = u.token_id
"""


@dataclass(frozen=True)
class TokenSummary:
    """A token as admins see it (never the token itself), with its usage over all days."""

    id: uuid.UUID
    name: str
    prefix: str
    models: tuple[str, ...] | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    requests: int = 0
    errors: int = 0
    tokens: int = 0

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utc_now():
            return "expired"
        return "active"


def generate_token() -> str:
    return ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_from_request_value(value: str | None) -> str | None:
    """The token if `value` is shaped like one (else None: no database lookup needed)."""
    if not value:
        return None
    value = value.strip()
    return value if ACCESS_TOKEN_PATTERN.fullmatch(value) else None


def _name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A token needs a name.")
    if len(name) > NAME_MAX_LENGTH or has_control_chars(name):
        raise InvalidInput(f"A token name is at most {NAME_MAX_LENGTH} printable characters.")
    if looks_like_key(name) or ACCESS_TOKEN_PATTERN.search(name):
        raise InvalidInput("A token name must not contain a key or a token.")
    return name


def normalise_models(models: str | list[str] | tuple[str, ...] | None
                     ) -> tuple[str, ...] | None:
    """"m1, m2" or a list -> ("m1", "m2") (a leading "models/" dropped); empty -> None."""
    if models is None:
        return None
    items = models.split(",") if isinstance(models, str) else list(models)
    result: list[str] = []
    for item in items:
        model = str(item).strip().removeprefix("models/")
        if not model:
            continue
        if not _MODEL.fullmatch(model):
            shown = model if len(model) <= 60 and not has_control_chars(model) else "?"
            raise InvalidInput(f"Not a model name: {shown!r} (like gemini-2.0-flash).")
        if model not in result:
            result.append(model)
    if len(result) > MAX_MODELS:
        raise InvalidInput(f"At most {MAX_MODELS} models per token.")
    return tuple(result) or None


def create_token(session: Session, *, name: str, models: str | list[str] | None = None,
                 expires_days: float | None = None) -> tuple[TokenSummary, str]:
    """A new token: (its summary, the plaintext, to show once). Audited in this
    transaction."""
    name = _name(name)
    allowed = normalise_models(models)
    if expires_days is not None and not 0 < expires_days <= MAX_EXPIRES_DAYS:
        raise InvalidInput(f"Expiry must be between 1 and {MAX_EXPIRES_DAYS} days.")
    taken = session.scalar(select(AccessToken.id).where(
        func.lower(AccessToken.name) == name.lower(), AccessToken.revoked_at.is_(None)))
    if taken is not None:
        raise InvalidInput(f"A live token is already named {name!r}.")
    token = generate_token()
    now = utc_now()
    row = AccessToken(name=name, token_hash=hash_token(token),
                      token_prefix=token[:SHOWN_PREFIX_LENGTH],
                      models=list(allowed) if allowed else None, created_at=now,
                      expires_at=(now + dt.timedelta(days=expires_days)
                                  if expires_days is not None else None))
    row.created_by = actor_of(session).user_id
    session.add(row)
    session.flush()
    write_audit(session, action=Action.ACCESS_TOKEN_CREATED, details={
        "token_id": str(row.id), "name": name, "prefix": row.token_prefix,
        "models": list(allowed) if allowed else None,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None})
    return _summary(row), token


def resolve_token(session: Session, name_or_id: str, *, for_update: bool = False
                  ) -> AccessToken:
    """A token by id, or the live token of that (case-insensitive) name; NotFound."""
    text_ = (name_or_id or "").strip()
    if looks_like_key(text_) or ACCESS_TOKEN_PATTERN.search(text_):
        raise NotFound("No such token: that argument looks like a key or a token; pass the "
                       "token's name or id instead.")
    query = select(AccessToken)
    if is_uuid(text_):
        query = query.where(AccessToken.id == uuid.UUID(text_))
    elif text_:
        query = query.where(func.lower(AccessToken.name) == text_.lower(),
                            AccessToken.revoked_at.is_(None))
    else:
        raise NotFound("Name the token to revoke.")
    row = session.scalar(query.with_for_update() if for_update else query)
    if row is None:
        shown = text_ if len(text_) <= NAME_MAX_LENGTH and not has_control_chars(text_) else "?"
        raise NotFound(f"No live token named or with id {shown!r}.")
    return row


def revoke_token(session: Session, name_or_id: str) -> TokenSummary:
    """Revoke a token (effective on its next request). Audited in this transaction."""
    row = resolve_token(session, name_or_id, for_update=True)
    if row.revoked_at is not None:
        raise InvalidInput(f"Token {row.name!r} is already revoked.")
    row.revoked_at = utc_now()
    session.flush()
    write_audit(session, action=Action.ACCESS_TOKEN_REVOKED, details={
        "token_id": str(row.id), "name": row.name, "prefix": row.token_prefix})
    return _summary(row)


def _summary(row: AccessToken, usage: tuple[int, int, int] = (0, 0, 0)) -> TokenSummary:
    return TokenSummary(row.id, row.name, row.token_prefix,
                        tuple(row.models) if row.models else None, row.created_at,
                        row.expires_at, row.revoked_at, row.last_used_at, *usage)


def list_tokens(session: Session, *, include_revoked: bool = True) -> list[TokenSummary]:
    """Every token, newest first, with requests, errors and tokens summed over its days."""
    usage = (select(AccessTokenUsage.token_id,
                    func.sum(AccessTokenUsage.request_count).label("requests"),
                    func.sum(AccessTokenUsage.error_count).label("errors"),
                    func.sum(AccessTokenUsage.total_tokens).label("tokens"))
             .group_by(AccessTokenUsage.token_id).subquery())
    query = (select(AccessToken, usage.c.requests, usage.c.errors, usage.c.tokens)
             .outerjoin(usage, usage.c.token_id == AccessToken.id)
             .order_by(AccessToken.created_at.desc(), AccessToken.name))
    if not include_revoked:
        query = query.where(AccessToken.revoked_at.is_(None))
    return [_summary(row, (int(r or 0), int(e or 0), int(t or 0)))
            for row, r, e, t in session.execute(query)]
