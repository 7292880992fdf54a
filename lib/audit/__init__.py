"""The audit log: writing rows (log), reading and paging them (queries), exporting (export)."""
