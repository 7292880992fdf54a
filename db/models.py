"""Typed models of the spec's tables and the columns the product adds beside them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

UUID_PK = dict(primary_key=True, server_default=text("uuid_generate_v4()"))


class Base(DeclarativeBase):
    pass


class AuthUser(Base):
    """Supabase's auth.users (created by our migration where it is missing). Declared for the
    foreign keys; the app reads and writes it only through migration 0005's gemini_auth_*
    functions (lib.users.accounts), never as a table."""

    __tablename__ = "users"
    __table_args__ = {"schema": "auth"}

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True,
                                          server_default=text("gen_random_uuid()"))
    email: Mapped[str | None] = mapped_column(String(255))
    encrypted_password: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))
    last_sign_in_at: Mapped[dt.datetime | None]


class UserProfile(Base):
    __tablename__ = "user_profiles"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("auth.users.id", ondelete="CASCADE"), primary_key=True)
    is_admin: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))


class ApiKey(Base):
    __tablename__ = "gemini_api_keys"

    # -- the spec's columns --
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), **UUID_PK)
    name: Mapped[str] = mapped_column(String(255))
    encrypted_key: Mapped[str] = mapped_column(Text)
    encryption_iv: Mapped[str] = mapped_column(String(255))
    encryption_tag: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    priority: Mapped[int | None] = mapped_column(Integer, server_default=text("1"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True),
                                                         ForeignKey("auth.users.id"))
    created_at: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))
    updated_at: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))
    last_used: Mapped[dt.datetime | None]
    usage_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    failure_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    # -- beside the spec --
    master_key_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    masked_hint: Mapped[str] = mapped_column(String(32), server_default=text("''"))
    group_label: Mapped[str | None] = mapped_column(String(100))
    archived_at: Mapped[dt.datetime | None]
    deleted_at: Mapped[dt.datetime | None]
    cooldown_until: Mapped[dt.datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # calls handed out by the pool and not yet recorded (migration 0012)
    in_flight: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lease_expires_at: Mapped[dt.datetime | None]


class AuditLog(Base):
    __tablename__ = "gemini_key_audit_log"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), **UUID_PK)
    key_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("gemini_api_keys.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(50))
    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True),
                                                      ForeignKey("auth.users.id"))
    created_at: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class UsageStat(Base):
    __tablename__ = "gemini_key_usage_stats"
    __table_args__ = (UniqueConstraint("key_id", "date"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), **UUID_PK)
    key_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("gemini_api_keys.id", ondelete="CASCADE"))
    date: Mapped[dt.date] = mapped_column(Date)
    request_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    success_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    failure_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    rate_limit_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    avg_response_time: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))



class ModelUsageStat(Base):
    """The spec's daily counts per key, split by model, with Gemini's token counts."""

    __tablename__ = "gemini_key_model_usage_stats"

    key_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("gemini_api_keys.id", ondelete="CASCADE"),
        primary_key=True)
    date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True,
                                       server_default=text("''"))
    request_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    success_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failure_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    rate_limit_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    avg_response_time: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    output_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    thoughts_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    cached_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    total_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


# A key's Google Cloud project: its group, or the key alone when it has none.
PROJECT_SQL = "COALESCE(NULLIF({k}group_label, ''), 'key:' || {k}id::text)"


def project_of(key_id: uuid.UUID | str, group_label: str | None) -> str:
    """The project of a key, as PROJECT_SQL computes it."""
    return group_label if group_label else f"key:{key_id}"


class QuotaLimit(Base):
    """An admin's limits for one group x model; NULL = no limit, 0 = no quota at all."""

    __tablename__ = "gemini_quota_limits"
    __table_args__ = (
        CheckConstraint("rpm IS NULL OR rpm >= 0"),
        CheckConstraint("tpm IS NULL OR tpm >= 0"),
        CheckConstraint("rpd IS NULL OR rpd >= 0"),
    )

    group_label: Mapped[str] = mapped_column(String(100), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(BigInteger)
    rpd: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class QuotaUsage(Base):
    """Requests and input tokens the pool counted for one project x model in one window:
    window_kind 'm' = the UTC minute, 'd' = the Pacific day (its midnight as naive UTC)."""

    __tablename__ = "gemini_quota_usage"
    __table_args__ = (CheckConstraint("window_kind IN ('m', 'd')"),)

    project: Mapped[str] = mapped_column(String(140), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_kind: Mapped[str] = mapped_column(CHAR(1), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class ModelCooldown(Base):
    """A project x model resting after a 429 naming the model, or without quota (no_quota)."""

    __tablename__ = "gemini_model_cooldowns"

    project: Mapped[str] = mapped_column(String(140), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    cooldown_until: Mapped[dt.datetime | None]
    no_quota: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))


class AccessToken(Base):
    """A gateway access token: only its SHA-256 hash is stored (migration 0014)."""

    __tablename__ = "gemini_access_tokens"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True,
                                          server_default=text("gen_random_uuid()"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64))
    token_prefix: Mapped[str] = mapped_column(String(16))
    models: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    created_at: Mapped[dt.datetime] = mapped_column(
        server_default=text("(now() AT TIME ZONE 'UTC')"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class AccessTokenUsage(Base):
    """Gateway requests per access token and UTC day."""

    __tablename__ = "gemini_access_token_usage"

    token_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("gemini_access_tokens.id", ondelete="CASCADE"),
        primary_key=True)
    date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    request_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    output_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    total_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    last_used_at: Mapped[dt.datetime | None]


# Held exclusively with the check row (start-up, rotation, restore) and shared by migration
# 0005's trigger for every new ciphertext, so a key added during a rotation waits for it.
MASTER_KEY_LOCK_ID = 0x676B6D6B


class MasterKeyCheck(Base):
    """One row: the master-key version in force and a value only that key decrypts."""

    __tablename__ = "gemini_master_key_check"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, server_default=text("1"))
    master_key_version: Mapped[int] = mapped_column(Integer)
    check_value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))


class SignInAttempt(Base):
    """Successful sign-ins with the client's address (failures are counted in
    SignInFailure); a client that signed in to an account before is recognised by them."""

    __tablename__ = "gemini_sign_in_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    succeeded: Mapped[bool] = mapped_column(Boolean)
    attempted_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    client_address: Mapped[str | None] = mapped_column(String(64))


class UserSession(Base):
    """One sign-in: the cookie names it (by a token whose hash is stored here), and it ends
    at expires_at or when revoked (sign-out, password reset, revoke-admin, sign out
    everywhere)."""

    __tablename__ = "gemini_user_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("auth.users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class SignInFailure(Base):
    """Failed and throttled sign-ins of one account from one client in one window, counted."""

    __tablename__ = "gemini_sign_in_failures"
    __table_args__ = (UniqueConstraint("email", "client_address", "window_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    client_address: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[dt.datetime]
    failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    refused: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    first_at: Mapped[dt.datetime]
    last_at: Mapped[dt.datetime]
    last_failed_at: Mapped[dt.datetime | None]
