"""rotate-master-key and generate-master-key. Key material is never printed, only file paths."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import click

from lib.cli.base import CliContext, actor_option, cli, fail, pass_cli
from lib.crypto.master_key import load_master_key, refuse_weak_key, restore_check_row
from lib.crypto.sealed import (
    MASTER_KEY_ENV,
    KeyDecryptionError,
    MasterKey,
    MasterKeyError,
    generate_master_key_b64,
)
from lib.keys.rotation import new_key_bytes, rotate_master_key, write_key_file

NEW_KEY_ENV = "GEMINI_KEYS_NEW_MASTER_KEY"


def _default_key_path(data_dir: Path) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return data_dir / f"master-key-{stamp}.key"


def _new_key_path_option(command):
    return click.option(
        "--new-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Where to write a generated key (mode 0600, must not exist; "
             "default: <data dir>/master-key-<UTC time>.key).")(command)


@cli.command("generate-master-key")
@_new_key_path_option
@pass_cli
def generate_master_key(cli_ctx: CliContext, new_key_file: Path | None) -> None:
    """Write a new random master key to a file readable by you only; print its path."""
    settings = cli_ctx.settings
    path = write_key_file(new_key_file or _default_key_path(settings.data_dir),
                          generate_master_key_b64())
    click.echo(f"new master key written to {path} (mode 0600); the key itself is not shown")


def _progress(delay: float):
    def report(done: int, total: int) -> None:
        click.echo(f"re-encrypted {done}/{total} keys", err=True)
        if delay and done < total:
            time.sleep(delay)
    return report


@cli.command("rotate-master-key")
@actor_option
@_new_key_path_option
@pass_cli
def rotate_master_key_command(cli_ctx: CliContext,
                              actor_email: str | None, new_key_file: Path | None) -> None:
    """Re-encrypt every stored key under a new master key, in one transaction.

    The new key comes from GEMINI_KEYS_NEW_MASTER_KEY, or is generated and written to a file
    (mode 0600) whose path is printed. A wrong current key (GEMINI_KEYS_MASTER_KEY) changes
    nothing. If the rotation is interrupted, nothing changes either. Afterwards, restart the
    app and every pool process with GEMINI_KEYS_MASTER_KEY set to the new key: the old key
    is refused from then on.
    """
    settings = cli_ctx.settings
    current, is_dev = load_master_key(settings)
    given = settings.new_master_key
    if given:
        new_b64 = given
        new = MasterKey.from_base64(given, source=NEW_KEY_ENV)
        if settings.production:
            refuse_weak_key(new, settings.data_dir, NEW_KEY_ENV)
    else:
        new_b64 = generate_master_key_b64()
    delay = settings.rotation_test_delay
    written: Path | None = None
    try:
        with cli_ctx.session(actor_email) as session:
            # Verify the current key and lock before writing any file: a refused rotation
            # leaves no stray key behind.
            def progress(done: int, total: int) -> None:
                nonlocal written
                if done == 0 and not given:
                    written = write_key_file(new_key_file or _default_key_path(
                        settings.data_dir), new_b64)
                    click.echo(f"new master key written to {written} (mode 0600)", err=True)
                _progress(delay)(done, total)

            result = rotate_master_key(session, current, new_key_bytes(new_b64),
                                       progress=progress)
    except (MasterKeyError, KeyDecryptionError) as error:
        if written:
            click.echo(f"the key in {written} was NOT put in use", err=True)
        hint = ""
        if isinstance(error, KeyDecryptionError) and not isinstance(error, MasterKeyError):
            # One corrupted row must not be silently dropped: the operator decides.
            hint = (f"; if only this key is damaged, delete it (python -m lib.cli delete-key "
                    f"{error.key_id} --yes), re-add it from its source, and rotate again")
        fail(f"rotation refused, nothing changed: {error}{hint}")
    except BaseException:
        if written:
            click.echo(f"rotation failed, nothing changed; the key in {written} was NOT put "
                       "in use (keep it until you have checked `python -m lib.cli status`)",
                       err=True)
        raise
    click.echo(f"master key rotated from version {result.old_version} to "
               f"{result.new_version}: {result.rotated} keys re-encrypted "
               f"({result.skipped_deleted} deleted keys skipped)")
    source = f"the file {written}" if written else f"the value of {NEW_KEY_ENV}"
    click.echo(f"next: set {MASTER_KEY_ENV} to {source} wherever the app and the key pool "
               "run (Streamlit secrets or environment) and restart them; the old key is "
               "refused from now on")
    if is_dev:
        click.echo(f"(development: replace {settings.data_dir / 'master.key'} with the new "
                   "key, or set the variable)")


@cli.command("restore-master-key-check")
@actor_option
@pass_cli
def restore_master_key_check(cli_ctx: CliContext, actor_email: str | None) -> None:
    """Record the master-key check value again after it was lost (start-up refuses without it).

    Every stored key is decrypted with GEMINI_KEYS_MASTER_KEY first; the check value is
    written only if all of them decrypt, so a wrong key changes nothing.
    """
    current, _ = load_master_key(cli_ctx.settings)
    try:
        with cli_ctx.session(actor_email) as session:
            proven, count = restore_check_row(session, current)
    except (MasterKeyError, KeyDecryptionError) as error:
        fail(f"restore refused, nothing changed: {error}; configure the master key these "
             "keys were encrypted with")
    click.echo(f"master-key check value restored at version {proven.version}: all {count} "
               "stored keys decrypt with the configured key")
