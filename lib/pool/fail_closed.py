"""A key that fails to decrypt: the row's fault, or this process's? Decided before acting.

A process started with the wrong master key would find every key undecryptable; if the
pool or a health check disabled each one for "decryption failed" it would switch the whole
pool off. So the database's check value is asked first: only when it proves this
process's master key is the right one (and at the database's version) is the row at
fault (tampered, copied, or a forged master_key_version), reported and skipped.
Otherwise MasterKeyMismatch stops the caller and nothing is disabled.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.crypto.sealed import (
    KeyDecryptionError,
    MasterKey,
    MasterKeyMismatch,
    verify_check_value,
)


def row_fault(session: Session, master: MasterKey,
              error: KeyDecryptionError | MasterKeyMismatch) -> str:
    """Why the row (not the process) is at fault; raises MasterKeyMismatch otherwise."""
    row = session.execute(text("SELECT master_key_version, check_value "
                               "FROM gemini_master_key_check WHERE id = 1")).first()
    if row is None:
        raise MasterKeyMismatch(master.version, ": this database has no master-key check "
                                "value, so no key is disabled for failing to decrypt")
    if row.master_key_version != master.version:
        raise MasterKeyMismatch(row.master_key_version,
                                f": this process holds version {master.version}")
    verify_check_value(replace(master, version=row.master_key_version), row.check_value)
    if isinstance(error, KeyDecryptionError):
        return error.reason
    return (f"the row claims master key version {error.version}, which this database "
            f"(at version {row.master_key_version}) never had: tampered row")
