"""Start-up: how long after `streamlit run app.py` a browser shows the sign-in form, on a
fresh clone and on a warm start, against the server's own health endpoint in the same run.

`python -m bench.bench_startup [--quick]`. Copies the working tree's tracked files into a
temporary directory (a fresh clone: no .data, no __pycache__), starts `streamlit run app.py`
there with no DATABASE_URL (the README's Quick start: embedded PostgreSQL under .data/pg),
and in headless Chromium opens the app the moment `/_stcore/health` answers, timing until
the sign-in form's password box is visible. Three starts:

- fresh: nothing there yet (initdb, migrations, dev keys, no bytecode);
- warm: the same clone started again, its PostgreSQL still running (as it keeps running);
- data, server stopped: the same clone after its PostgreSQL was stopped (after a reboot).

Each row's baseline is the health endpoint's time of the same start; a last row times a
one-line Streamlit script the same way, the floor any Streamlit app pays on this machine.
The embedded server started here is stopped at the end (by the pid in its postmaster.pid).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import row
from db.engine import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
DROP_ENV = ("DATABASE_URL", "DATABASE_OWNER_URL", "GEMINI_KEYS_MASTER_KEY",
            "GEMINI_KEYS_COOKIE_KEY", "GEMINI_KEYS_DATA_DIR")
AIMS = {"fresh": "≤ 5 s", "warm": "≤ 3 s", "data, server stopped": "info"}


def fresh_clone(target: Path) -> None:
    """The working tree's files that git would commit (as `git clone` would give them)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=REPO_ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=1) as response:  # noqa: S310
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


def one_start(clone: Path, browser) -> tuple[float, float]:
    """(seconds to health, seconds to the visible sign-in form) of one `streamlit run`."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    log = open(clone / f"streamlit-{port}.log", "wb")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not healthy(base):
            if process.poll() is not None or time.perf_counter() - started > 120:
                raise RuntimeError((clone / f"streamlit-{port}.log").read_text()[-2000:])
            time.sleep(0.05)
        health = time.perf_counter() - started
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(base)
        page.get_by_role("textbox", name="Password").last.wait_for()
        form = time.perf_counter() - started
        context.close()
        return health, form
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        log.close()


HELLO = 'import streamlit as st\nst.text_input("Password", type="password")\n'


def hello_start(directory: Path, browser) -> tuple[float, float]:
    """The floor: a one-line Streamlit script's form, the same way (no database at all)."""
    (directory / "hello").mkdir(exist_ok=True)
    (directory / "hello" / "app.py").write_text(HELLO)
    return one_start(directory / "hello", browser)


def stop_embedded(clone: Path) -> None:
    """Stop the PostgreSQL this benchmark started (smart shutdown, by its pid)."""
    pidfile = clone / ".data" / "pg" / "postmaster.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text().splitlines()[0])
    os.kill(pid, signal.SIGTERM)
    for _ in range(300):
        if not pidfile.exists():
            return
        time.sleep(0.1)


def run(quick: bool = False) -> list[dict]:
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory(prefix="gk-bench-start-") as tmp, \
            sync_playwright() as playwright:
        clone = Path(tmp) / "clone"
        fresh_clone(clone)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        try:
            runs = [("fresh", one_start(clone, browser))]
            for _ in range(1 if quick else 2):
                runs.append(("warm", one_start(clone, browser)))
            stop_embedded(clone)
            runs.append(("data, server stopped", one_start(clone, browser)))
            hello = hello_start(Path(tmp), browser)
        finally:
            browser.close()
            stop_embedded(clone)
        for label, (health, form) in runs:
            rows.append(row(f"sign-in form after `streamlit run app.py`, {label}", form,
                            "health endpoint answers, same start", health, AIMS[label]))
        rows.append(row("the floor: a one-line Streamlit script's password box", hello[1],
                        "health endpoint answers, same start", hello[0], "info"))
    return rows


if __name__ == "__main__":
    from bench.__main__ import render

    print(render(run(quick="--quick" in sys.argv), markdown="--markdown" in sys.argv))
