"""Start-up work at server start, not on the first page view: st.App's lifespan (app.py).

`streamlit run app.py` answers its health check within about a second, but the first page
view used to do the slow part itself: start the embedded PostgreSQL, apply migrations,
load and verify the master key, and import the page modules (pandas, Plotly). The lifespan
starts that work in a background thread the moment the server starts, so it overlaps with
the browser loading Streamlit's frontend; a page view that arrives earlier waits for the
same cached Runtime (st.cache_resource computes it once). A failure here is only logged:
the page shows it (lib/ui/errors.py) and retries on the next run.

While no admin exists, it also prints a new one-time setup code to the console
(lib/ui/first_admin.py).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from lib.operator_errors import describe

log = logging.getLogger("gemini_keys.ui")

# What the first page views import: imported here first, off the request path.
PAGE_MODULES = ("pandas", "plotly.graph_objects", "lib.ui.overview", "lib.ui.keys",
                "lib.ui.analytics", "lib.ui.audit", "lib.ui.admins", "lib.ui.first_admin")
ready = threading.Event()  # set when the warm-up has finished (successfully or not)
THREAD_NAME = "gk-start-up"


class _QuietWarmUp(logging.Filter):
    """Streamlit warns "missing ScriptRunContext" for cached calls outside a script run,
    which the warm-up is by design: drop that warning for the warm-up thread only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != THREAD_NAME


def warm_up() -> None:
    """Build the process's Runtime (database, migrations, master key), print a setup code
    while no admin exists, import the pages' modules."""
    started = time.perf_counter()
    try:
        from lib.ui.first_admin import announce_setup_code
        from lib.ui.runtime import get_cookie_settings, get_runtime

        runtime = get_runtime()
        get_cookie_settings(runtime)
        announce_setup_code(runtime, force=True)
        for module in PAGE_MODULES:
            importlib.import_module(module)
        log.info("ready in %.1f s (database, migrations, master key, page modules)",
                 time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 - the first page view shows it, and retries
        log.warning("start-up did not finish: %s; the pages will retry",
                    describe(error) or f"{type(error).__name__}: {error}")
    finally:
        ready.set()


def route_every_url_through_the_navigation() -> None:
    """Streamlit serves pages/<name>.py by URL on its own (its old automatic routing) until
    some session has called st.navigation; a deep link on a freshly started server then ran
    the page file directly, and its guard could only send the visitor to the main script,
    losing the page asked for (and, without the guard, showing it to anyone). Switch that
    routing off before the first session, as st.navigation itself does: from the first visit
    on, dashboard.py's navigation resolves every URL."""
    try:
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False
    except (ImportError, AttributeError):  # another Streamlit: the guards still hold
        log.warning("could not switch off Streamlit's automatic page routing")


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """st.App's lifespan: start the warm-up and serve at once (it runs beside the server)."""
    route_every_url_through_the_navigation()
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        _QuietWarmUp())
    threading.Thread(target=warm_up, name=THREAD_NAME, daemon=True).start()
    yield
