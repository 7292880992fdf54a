"""Webhook notifications (generic JSON and Slack) for what an admin must hear about now.

events.py: the vocabulary, payloads, signature. delivery.py: the queue, worker, retries and
cross-process dedupe. hooks.py: where events enter, each held until its transaction commits.
"""

from lib.notify.hooks import NEAR_LIMIT_SHARE, quota_near_limit, wants

__all__ = ["NEAR_LIMIT_SHARE", "quota_near_limit", "wants"]
