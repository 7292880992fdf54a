"""Adding many keys at once: parse a paste or file, preview it line by line, add the good lines.

Accepted lines: `name,key` (split at the last comma, or a tab), or a bare `key` (named
`key-<8 hex of its keyed fingerprint>`). Blank lines, `#` comments and a `name,key` header are
skipped. The preview says, per line number, what will be added and what is refused and why;
`import_keys` adds nothing while any line is refused unless `skip_refused` (the caller's
confirmation). Previews hold the plaintext only in a private field, never shown or repr'd.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import ApiKey
from lib.audit.log import Action, write_audit
from lib.crypto.sealed import MasterKey, fingerprint
from lib.errors import GeminiKeysError, InvalidInput
from lib.key_format import ApiKeyText, looks_like_key, masked_hint, normalise_api_key
from lib.keys.rules import DEFAULT_PRIORITY, validate_group, validate_name, validate_priority
from lib.keys.status import NOT_DELETED
from lib.keys.writes import insert_key

IMPORT_MAX_LINES = 5000
IMPORT_MAX_CHARS = 1_000_000
# A file of IMPORT_MAX_LINES keys is ~0.5 MB. .streamlit/config.toml's server.maxUploadSize
# (in MB) says the same to Streamlit, whose default would accept 200 MB.
IMPORT_MAX_BYTES = 1024 * 1024
_HEADERS = {("name", "key"), ("name", "api_key"), ("name", "api key")}


def decode_import(raw: bytes, what: str = "The file") -> str:
    """A file's bytes as text; InvalidInput when it is too big or not UTF-8 (the message
    never quotes the file: it may hold keys)."""
    if len(raw) > IMPORT_MAX_BYTES:
        raise InvalidInput(f"{what} is larger than {IMPORT_MAX_BYTES // 1024:,} KiB; import at "
                           f"most {IMPORT_MAX_LINES:,} keys at a time.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise InvalidInput(f"{what} is not UTF-8 text (line {line} is not); save it as UTF-8 "
                           "and try again.") from None


@dataclass(frozen=True)
class ImportLine:
    """One content line of the paste: added when `problem` is None."""

    line_no: int
    name: str | None  # None when the name itself was refused (it is never shown then)
    masked_hint: str | None  # None unless the key is well-formed
    problem: str | None
    api_key: ApiKeyText = field(default=ApiKeyText(""), repr=False, compare=False)
    key_fingerprint: str = field(default="", repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class ImportPreview:
    lines: tuple[ImportLine, ...]
    priority: int
    group_label: str | None

    @property
    def to_add(self) -> list[ImportLine]:
        return [line for line in self.lines if line.ok]

    @property
    def refused(self) -> list[ImportLine]:
        return [line for line in self.lines if not line.ok]

    def signature(self) -> tuple[tuple[int, str | None, str | None], ...]:
        """What a confirmation must match (line numbers, names, hints; no key material)."""
        return tuple((line.line_no, line.name, line.masked_hint) for line in self.to_add)

    def rows(self) -> list[dict[str, object]]:
        """Display rows: line, name, masked key, result."""
        return [{"line": line.line_no, "name": line.name or "—", "key": line.masked_hint or "—",
                 "result": "will be added" if line.ok else f"refused: {line.problem}"}
                for line in self.lines]

    def refused_summary(self, limit: int = 10) -> str:
        shown = "; ".join(f"line {line.line_no}: {line.problem}" for line in self.refused[:limit])
        more = len(self.refused) - limit
        return shown + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class ImportResult:
    added: list[ApiKey]
    refused: list[ImportLine]


def _split(raw: str) -> tuple[str | None, str]:
    """(name or None, key text) of one line."""
    if "," in raw:
        name, key = raw.rsplit(",", 1)
        return name, key
    if "\t" in raw:
        name, key = raw.rsplit("\t", 1)
        return name, key
    return None, raw


def _parse_line(master: MasterKey, line_no: int, raw: str) -> ImportLine:
    name_text, key_text = _split(raw)
    try:
        api_key = normalise_api_key(key_text)
    except InvalidInput as error:
        if name_text is not None and looks_like_key(name_text):
            return ImportLine(line_no, None, None,
                              "the columns look swapped: write name,key")
        return ImportLine(line_no, None, None, str(error))
    key_fingerprint = fingerprint(master, api_key)
    hint = masked_hint(api_key)
    if name_text is None:
        name = f"key-{key_fingerprint[:8]}"
    else:
        try:
            name = validate_name(name_text)
        except InvalidInput as error:
            return ImportLine(line_no, None, hint, str(error))
    return ImportLine(line_no, name, hint, None, api_key, key_fingerprint)


def _content_lines(text: str) -> list[tuple[int, str]]:
    if not isinstance(text, str):
        raise InvalidInput("The keys to import must be text.")
    if len(text) > IMPORT_MAX_CHARS:
        raise InvalidInput(f"The paste is too large (at most {IMPORT_MAX_CHARS:,} characters).")
    lines = [(n, raw.strip()) for n, raw in enumerate(text.splitlines(), start=1)]
    lines = [(n, raw) for n, raw in lines if raw and not raw.startswith("#")]
    if lines:
        first = tuple(part.strip().lower() for part in lines[0][1].replace("\t", ",").split(","))
        if first in _HEADERS:
            lines = lines[1:]
    if not lines:
        raise InvalidInput("There are no keys to import (the text is empty).")
    if len(lines) > IMPORT_MAX_LINES:
        raise InvalidInput(f"Too many lines ({len(lines):,}); import at most "
                           f"{IMPORT_MAX_LINES:,} keys at a time.")
    return lines


def preview_import(session: Session, master: MasterKey, text: str, *,
                   priority: int = DEFAULT_PRIORITY,
                   group_label: str | None = None) -> ImportPreview:
    """Check every line (shape, name, duplicates in the paste and in the database)."""
    priority = validate_priority(priority)
    group_label = validate_group(group_label)
    parsed = [_parse_line(master, n, raw) for n, raw in _content_lines(text)]
    good = [line for line in parsed if line.ok]
    stored_names = dict(session.execute(
        select(func.lower(ApiKey.name), ApiKey.name).where(
            NOT_DELETED.expr(),
            func.lower(ApiKey.name).in_({line.name.lower() for line in good if line.name}),
        )).all()) if good else {}
    stored_prints = dict(session.execute(
        select(ApiKey.fingerprint, ApiKey.name).where(
            NOT_DELETED.expr(),
            ApiKey.fingerprint.in_({line.key_fingerprint for line in good}),
        )).all()) if good else {}
    seen_names: dict[str, int] = {}
    seen_prints: dict[str, int] = {}
    checked: list[ImportLine] = []
    for line in parsed:
        problem = line.problem
        if problem is None:
            lower = (line.name or "").lower()
            if line.key_fingerprint in stored_prints:
                problem = f"this key is already stored, as {stored_prints[line.key_fingerprint]!r}"
            elif line.key_fingerprint in seen_prints:
                problem = f"the same key as line {seen_prints[line.key_fingerprint]}"
            elif lower in stored_names:
                problem = f"a key named {stored_names[lower]!r} already exists"
            elif lower in seen_names:
                problem = f"the same name as line {seen_names[lower]}"
            else:
                seen_prints[line.key_fingerprint] = line.line_no
                seen_names[lower] = line.line_no
        if problem is not None and line.ok:
            line = ImportLine(line.line_no, line.name, line.masked_hint, problem)
        checked.append(line)
    return ImportPreview(tuple(checked), priority, group_label)


def import_keys(session: Session, master: MasterKey, text: str, *,
                priority: int = DEFAULT_PRIORITY, group_label: str | None = None,
                skip_refused: bool = False) -> ImportResult:
    """Preview `text` and add its good lines (see add_previewed)."""
    preview = preview_import(session, master, text, priority=priority, group_label=group_label)
    return add_previewed(session, master, preview, skip_refused=skip_refused)


def add_previewed(session: Session, master: MasterKey, preview: ImportPreview, *,
                  skip_refused: bool = False) -> ImportResult:
    """Add the lines a preview marked "will be added"; refuses everything while a line is
    refused, unless told to skip. One `key_imported` audit row per added key, in the
    caller's transaction; a key added meanwhile by someone else aborts the whole import."""
    if preview.refused and not skip_refused:
        raise InvalidInput(f"Nothing was added: {len(preview.refused)} line(s) refused — "
                           f"{preview.refused_summary()}")
    if not preview.to_add:
        raise InvalidInput(f"Nothing to add: every line was refused — "
                           f"{preview.refused_summary()}")
    added = []
    for line in preview.to_add:
        try:
            row = insert_key(session, master, name=line.name or "", api_key=line.api_key,
                             priority=preview.priority, group_label=preview.group_label)
        except GeminiKeysError as error:
            raise InvalidInput(f"line {line.line_no}: {error}") from None
        write_audit(session, action=Action.KEY_IMPORTED, key_id=row.id,
                    details={"name": row.name, "priority": preview.priority,
                             "group": preview.group_label, "line": line.line_no})
        added.append(row)
    return ImportResult(added, preview.refused)
