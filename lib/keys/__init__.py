"""Stored Gemini keys: rules (what may be stored), status (what state a key is in: the one
set of predicates), reads (the table, lookups, reveal), writes (every change, audited),
importing (paste → preview → add), rotation (re-seal every key under a new master key)."""
