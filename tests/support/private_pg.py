"""A private embedded PostgreSQL a test may restart or crash (never the shared servers)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text

from db.engine import ensure_app_login, start_embedded_postgres
from lib.settings import server_environment
from tests.support.databases import REPO_ROOT, stop_embedded_postgres, with_database


class PrivateServer:
    """Under .data/ (the server's OS user must reach it); removed by close()."""

    def __init__(self, name: str) -> None:
        self.pgdata = REPO_ROOT / ".data" / f"{name}-{os.getpid()}"
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self.superuser_url = start_embedded_postgres(self.pgdata, env=server_environment())
        ensure_app_login(self.superuser_url)

    def database(self, name: str) -> str:
        admin = create_engine(self.superuser_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return with_database(self.superuser_url, name)

    def restart(self, mode: str = "fast") -> None:
        """pg_ctl restart; mode "immediate" is a crash (recovery at start-up)."""
        self._pg_ctl("-m", mode, "restart")

    def _pg_ctl(self, *args: str) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        subprocess.run([str(Path(POSTGRES_BIN_PATH) / "pg_ctl"), "-D", str(self.pgdata), "-w",
                        "-l", str(self.pgdata / "restart.log"), *args],
                       user="embedded_postgres" if os.geteuid() == 0 else None,
                       env=server_environment(), capture_output=True, timeout=120, check=True)

    def close(self) -> None:
        stop_embedded_postgres(self.pgdata)
        shutil.rmtree(self.pgdata, ignore_errors=True)
