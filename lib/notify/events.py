"""What a webhook may say: the event vocabulary, one builder per event, and the two wire
formats (a generic JSON document and Slack's incoming-webhook message).

A builder takes names, masked hints, group labels, counts and times only; there is no
parameter through which a key, a token or a fingerprint could enter. Every string is still
passed through lib.redact before it is serialised (the second line of defence).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from lib.clock import naive_utc
from lib.redact import redact
from lib.settings import WEBHOOK_EVENTS

Severity = Literal["error", "warning", "info"]
SIGNATURE_HEADER = "X-Gemini-Keys-Signature"
TIMESTAMP_HEADER = "X-Gemini-Keys-Timestamp"
EVENT_HEADER = "X-Gemini-Keys-Event"

KEY_AUTO_DISABLED, GROUP_COOLING_DOWN, TIER_COOLING_DOWN = WEBHOOK_EVENTS[:3]
FEW_USABLE_KEYS, QUOTA_NEAR_LIMIT, MASTER_KEY_ROTATED = WEBHOOK_EVENTS[3:]


@dataclass(frozen=True)
class Event:
    """One notification. dedupe_key names what it is about (the same key, group, tier…);
    the same dedupe_key is sent once per window, or until `dedupe_until` when set."""

    kind: str
    severity: Severity
    title: str
    summary: str
    data: dict[str, Any]
    dedupe_key: str
    dedupe_until: dt.datetime | None = None  # naive UTC (quota: when the quota resets)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: dt.datetime = field(default_factory=lambda: naive_utc(dt.datetime.now(dt.UTC)))

    def __post_init__(self) -> None:
        if self.kind not in WEBHOOK_EVENTS:
            raise ValueError(f"unknown webhook event {self.kind!r}")


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = naive_utc(moment)
    return moment.replace(microsecond=0).isoformat() + "Z"


def _key_words(name: str, hint: str | None, group: str | None) -> str:
    extra = ", ".join(part for part in (hint, f"group {group}" if group else None) if part)
    return f"“{name}”" + (f" ({extra})" if extra else "")


# -- the builders ----------------------------------------------------------------------------

def key_auto_disabled(*, name: str, hint: str | None, group: str | None, reason: str,
                      trigger: str) -> Event:
    return Event(KEY_AUTO_DISABLED, "error", "Key disabled automatically",
                 f"Key {_key_words(name, hint, group)} was disabled automatically "
                 f"({trigger}): {reason}",
                 {"key_name": name, "key_hint": hint, "group": group, "reason": reason,
                  "trigger": trigger},
                 dedupe_key=f"{KEY_AUTO_DISABLED}:{name}")


def group_cooling_down(*, group: str, keys: int, until: dt.datetime | None, scope: str,
                       caused_by: str, model: str | None = None) -> Event:
    """The whole group cools, or (with `model`) the group's project for that model only."""
    why = {"day": "its per-day quota is exhausted",
           "no quota": "its tier has no quota for the model (Google said limit: 0)"
           }.get(scope, "it is rate limited")
    if model is None:
        text_ = (f"Every key of group {group} ({keys}) is cooling down until {_iso(until)}: "
                 f"{why} (first hit on “{caused_by}”)")
    else:
        text_ = (f"Group {group} is cooling down for {model}"
                 + (f" until {_iso(until)}" if until else "")
                 + f": {why} (hit on “{caused_by}”); its other models stay usable")
    return Event(GROUP_COOLING_DOWN, "warning", "Group cooling down", text_,
                 {"group": group, "keys": keys, "until": _iso(until), "scope": scope,
                  "model": model, "caused_by_key_name": caused_by},
                 dedupe_key=f"{GROUP_COOLING_DOWN}:{group}:{scope}:{model or ''}")


def tier_cooling_down(*, priority: int, keys: int, back_at: dt.datetime | None) -> Event:
    return Event(TIER_COOLING_DOWN, "warning", "Priority tier unavailable",
                 f"All {keys} active key(s) of priority {priority} are cooling down"
                 + (f" (the first is back at {_iso(back_at)})" if back_at else "")
                 + "; requests fall back to lower priorities",
                 {"priority": priority, "keys": keys, "back_at": _iso(back_at)},
                 dedupe_key=f"{TIER_COOLING_DOWN}:{priority}")


def few_usable_keys(*, usable: int, minimum: int, live: int) -> Event:
    return Event(FEW_USABLE_KEYS, "error", "Too few usable keys",
                 f"Only {usable} usable key(s) left (minimum {minimum}; {live} in service)",
                 {"usable": usable, "minimum": minimum, "live": live},
                 dedupe_key=FEW_USABLE_KEYS)


def quota_near_limit(*, group: str | None, model: str, limit_name: str, used: float,
                     limit: float, resets_at: dt.datetime | None) -> Event:
    """Sent once per quota period (until resets_at) for each (group, model, limit)."""
    share = used / limit if limit else 1.0
    where = f"group {group}" if group else "keys without a group"
    return Event(QUOTA_NEAR_LIMIT, "warning", "Quota nearly used up",
                 f"{where}: {model} {limit_name} at {share:.0%} ({used:g} of {limit:g})"
                 + (f", resets at {_iso(resets_at)}" if resets_at else ""),
                 {"group": group, "model": model, "limit_name": limit_name, "used": used,
                  "limit": limit, "share": round(share, 4), "resets_at": _iso(resets_at)},
                 dedupe_key=f"{QUOTA_NEAR_LIMIT}:{group}:{model}:{limit_name}:{_iso(resets_at)}",
                 dedupe_until=(naive_utc(resets_at) if resets_at and resets_at.tzinfo
                               else resets_at))


def master_key_rotated(*, rotated: int, skipped_deleted: int, old_version: int,
                       new_version: int, source: str) -> Event:
    return Event(MASTER_KEY_ROTATED, "info", "Master key rotated",
                 f"Master key rotated from version {old_version} to {new_version} "
                 f"({rotated} key(s) re-encrypted, via {source}); restart every process "
                 "that still holds the old key",
                 {"rotated": rotated, "skipped_deleted": skipped_deleted,
                  "old_version": old_version, "new_version": new_version, "source": source},
                 dedupe_key=f"{MASTER_KEY_ROTATED}:{new_version}")


# -- wire formats ----------------------------------------------------------------------------

def scrubbed(value: Any) -> Any:
    """Every string in `value` through lib.redact (the payload stays valid JSON)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {scrubbed(k): scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(v) for v in value]
    return value


def generic_payload(event: Event) -> dict[str, Any]:
    return scrubbed({"event": event.kind, "id": event.id,
                     "occurred_at": _iso(event.occurred_at), "severity": event.severity,
                     "title": event.title, "summary": event.summary, "data": event.data})


def _slack_escape(text: str) -> str:
    # Slack reads <…> as links and mentions (<!channel>): user text must not ping anyone.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


SLACK_ICONS = {"error": ":red_circle:", "warning": ":warning:", "info": ":information_source:"}


def slack_payload(event: Event) -> dict[str, Any]:
    """Slack's incoming-webhook message: `text` (the notification) and blocks."""
    title = f"{SLACK_ICONS[event.severity]} *{_slack_escape(event.title)}*"
    body = _slack_escape(event.summary)
    return scrubbed({
        "text": f"{event.title}: {_slack_escape(event.summary)}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{title}\n{body}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(
                f"{event.kind} · {_iso(event.occurred_at)} · id {event.id}")}]},
        ],
    })


def body_of(event: Event, format: str) -> bytes:
    payload = slack_payload(event) if format == "slack" else generic_payload(event)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """v1=hex(HMAC-SHA256(secret, timestamp + "." + body)): what receivers recompute."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (README: verifying the signature); the tests use it too."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def redacted_url(url: str) -> str:
    """scheme://host[:port]/… : a Slack URL's path is its secret, a query may hold a token."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{rest}"
