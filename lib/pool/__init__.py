"""The key pool (public API): services get the best Gemini key and report each call.

    from lib.pool import KeyPool, NoKeyAvailable

Inside: keypool (acquire / record / lease), quota_sql (the one-round-trip statements),
usage (token counts from a response), availability (why no key, and when one frees up),
model_cooldowns (a project x model resting), policy (what a failure does to a key),
gemini_errors (what Gemini's answers mean), fail_closed (a bad row vs a wrong master key),
health (asking Gemini about a key), status (the pool's view of every key), connections
(the pool's own connections).
"""

from lib.crypto.sealed import KeyDecryptionError, MasterKeyMismatch
from lib.pool.availability import NoKeyAvailable
from lib.pool.keypool import ACQUIRE_SQL, POOL_ACTOR, KeyPool, Lease
from lib.pool.policy import FailurePolicy
from lib.pool.status import KeyState, pool_status

__all__ = ["ACQUIRE_SQL", "POOL_ACTOR", "FailurePolicy", "KeyDecryptionError", "KeyPool",
           "KeyState", "Lease", "MasterKeyMismatch", "NoKeyAvailable", "pool_status"]
