"""Where events enter: one call per automatic change (lib.keys.writes), per rotation
(lib.keys.rotation), per quota crossing (the quota pool), each held until the caller's
transaction COMMITS.

Each hook returns at once when webhooks are off (one attribute read). When they are on it
reads, in the caller's transaction, what the message needs (names, masked hints, groups and
counts, with lib.keys.status's predicates) and parks the events on the session; they reach
the notifier only from the session's after_commit event, and any rollback (a savepoint's
too) throws them away: nobody is told about a change that did not happen.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.session import actor_of
from lib.clock import utc_now
from lib.keys.status import ENABLED, IN_SERVICE, USABLE
from lib.notify import delivery, events
from lib.notify.events import Event

log = logging.getLogger("gemini_keys.notify")
PENDING = "gemini_keys.notify.pending"
NEAR_LIMIT_SHARE = 0.9  # quota_near_limit speaks from this share of a limit on

_KEY = text(f"""
SELECT k.name, k.masked_hint, k.group_label,
       (SELECT count(*) FROM gemini_api_keys u WHERE {USABLE.sql("u")}) AS usable,
       (SELECT count(*) FROM gemini_api_keys u WHERE {IN_SERVICE.sql("u")}) AS live
FROM gemini_api_keys k WHERE k.id = :id""")
_TIERS = text(f"""
SELECT coalesce(k.priority, 1) AS priority, count(*) AS keys,
       count(*) FILTER (WHERE {USABLE.sql("k")}) AS usable,
       min(k.cooldown_until) FILTER (WHERE k.cooldown_until > :now) AS back_at
FROM gemini_api_keys k
WHERE {ENABLED.sql("k")} AND coalesce(k.priority, 1) IN
      (SELECT coalesce(priority, 1) FROM gemini_api_keys WHERE id = ANY(:ids))
GROUP BY 1 ORDER BY 1 DESC""")
_GROUP = text(f"""
SELECT count(*) FROM gemini_api_keys k
WHERE {ENABLED.sql("k")} AND k.group_label = :group AND k.cooldown_until > :now""")


def _on() -> delivery.Notifier | None:
    return delivery.current()


def wants(kind: str) -> bool:
    """Whether this process sends `kind` (webhooks on and the event chosen)."""
    notifier = _on()
    return notifier is not None and notifier.wants(kind)


def after_commit(session: Session, *found: Event | None) -> None:
    """Send `found` once the session's transaction commits (nothing on rollback)."""
    events_ = [e for e in found if e is not None]
    if events_:
        session.info.setdefault(PENDING, []).extend(events_)


@sa_event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the outer one decides
        return
    pending = session.info.pop(PENDING, None)
    notifier = _on()
    if pending and notifier is not None:
        try:
            for event in pending:
                notifier.submit(event)
        except Exception:  # noqa: BLE001 - the change is committed; never fail its caller
            log.exception("webhooks: could not queue %d event(s)", len(pending))


@sa_event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction: object) -> None:
    session.info.pop(PENDING, None)


# -- the hooks ------------------------------------------------------------------------------

def _few_usable(notifier: delivery.Notifier, usable: int, live: int) -> Event | None:
    minimum = notifier.config.min_usable_keys
    if usable >= minimum or not notifier.wants(events.FEW_USABLE_KEYS):
        return None
    return events.few_usable_keys(usable=usable, minimum=minimum, live=live)


def key_auto_disabled(session: Session, key_id: uuid.UUID, *, reason: str,
                      trigger: str) -> None:
    """lib.keys.writes.auto_disable changed a key (same transaction)."""
    notifier = _on()
    if notifier is None:
        return
    row = session.execute(_KEY, {"id": key_id, "now": utc_now()}).one()
    after_commit(session,
                 events.key_auto_disabled(name=row.name, hint=row.masked_hint or None,
                                          group=row.group_label, reason=reason,
                                          trigger=trigger),
                 _few_usable(notifier, row.usable, row.live))


def keys_cooled(session: Session, key_id: uuid.UUID, cooled: Sequence[uuid.UUID], *,
                group_label: str | None, whole_group: bool, until: dt.datetime,
                scope: str) -> None:
    """lib.keys.writes.apply_cooldown cooled `cooled` (key_id hit the limit)."""
    notifier = _on()
    if notifier is None or not cooled:
        return
    now = utc_now()
    row = session.execute(_KEY, {"id": key_id, "now": now}).one()
    found: list[Event | None] = [_few_usable(notifier, row.usable, row.live)]
    if whole_group and group_label is not None and notifier.wants(events.GROUP_COOLING_DOWN):
        keys = session.scalar(_GROUP, {"group": group_label, "now": now}) or 0
        found.append(events.group_cooling_down(group=group_label, keys=keys, until=until,
                                               scope=scope, caused_by=row.name))
    if notifier.wants(events.TIER_COOLING_DOWN):
        for tier in session.execute(_TIERS, {"ids": list(cooled), "now": now}):
            if tier.keys and not tier.usable:
                found.append(events.tier_cooling_down(priority=tier.priority, keys=tier.keys,
                                                      back_at=tier.back_at))
    after_commit(session, *found)


def model_cooled(session: Session, *, project: str, model: str, until: dt.datetime | None,
                 scope: str, no_quota: bool, caused_by: uuid.UUID) -> None:
    """lib.pool.model_cooldowns cooled (or marked without quota) one project x model."""
    if not wants(events.GROUP_COOLING_DOWN):
        return
    row = session.execute(_KEY, {"id": caused_by, "now": utc_now()}).one()
    after_commit(session, events.group_cooling_down(
        group=project, keys=0, until=until, scope="no quota" if no_quota else scope,
        caused_by=row.name, model=model))


def master_key_rotated(session: Session, *, rotated: int, skipped_deleted: int,
                       old_version: int, new_version: int) -> None:
    """lib.keys.rotation re-encrypted every key (same transaction)."""
    if _on() is None:
        return
    after_commit(session, events.master_key_rotated(
        rotated=rotated, skipped_deleted=skipped_deleted, old_version=old_version,
        new_version=new_version, source=actor_of(session).source))


def quota_near_limit(group: str | None, model: str, limit_name: str, used: float,
                     limit: float, resets_at: dt.datetime | None, *,
                     session: Session | None = None) -> None:
    """Call it whenever a budget is counted: from NEAR_LIMIT_SHARE of `limit` on it notifies,
    once per quota period (until resets_at) per (group, model, limit_name). With `session`
    the event waits for that transaction to commit; without, it goes now.
    """
    notifier = _on()
    if notifier is None or limit <= 0 or used < NEAR_LIMIT_SHARE * limit:
        return
    found = events.quota_near_limit(group=group, model=model, limit_name=limit_name,
                                    used=used, limit=limit, resets_at=resets_at)
    if session is None:
        notifier.submit(found)
    else:
        after_commit(session, found)
