"""The key pool (public API): services get the best Gemini key and report each call.

    from lib.pool import KeyPool, NoKeyAvailable

Inside: keypool (selection, the one-round-trip statements), policy (what a failure does to
a key), gemini_errors (what Gemini's answers mean), health (asking Gemini about a key),
status (the pool's view of every key), connections (the pool's own connections).
"""

from lib.crypto.sealed import KeyDecryptionError
from lib.pool.keypool import ACQUIRE_SQL, POOL_ACTOR, KeyPool, Lease, NoKeyAvailable
from lib.pool.policy import FailurePolicy
from lib.pool.status import KeyState, pool_status

__all__ = ["ACQUIRE_SQL", "POOL_ACTOR", "FailurePolicy", "KeyDecryptionError", "KeyPool",
           "KeyState", "Lease", "NoKeyAvailable", "pool_status"]
