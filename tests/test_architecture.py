"""The layers of docs/architecture.md hold: imports only point down (or stay in their own
package), Streamlit stays in lib/ui, pages, app.py and dashboard.py (and the page
benchmarks), SQL stays out of pages, and every page file starts with the admin guard."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lib.settings import REPO_ROOT

# docs/architecture.md, "The layers": a module may import modules of its own layer's
# package and of lower layers, never of a higher one.
LAYERS: list[tuple[int, str]] = [
    (0, "db/"), (0, "lib/errors.py"), (0, "lib/__init__.py"),
    (1, "lib/clock.py"), (1, "lib/key_format.py"), (1, "lib/streaming.py"),
    (1, "lib/concurrency.py"), (1, "lib/token_counts.py"),
    # The key predicates are pure SQL text: everything that asks "is this key live?" may
    # use them, down to the master-key check (so the rule has one home, in lib/keys).
    (1, "lib/keys/status.py"),
    (2, "lib/redact.py"),
    (3, "lib/settings.py"), (3, "lib/secret_files.py"), (3, "lib/logging_setup.py"),
    (3, "lib/audit/"), (3, "lib/operator_errors.py"),
    (4, "lib/crypto/"), (4, "lib/users/"), (4, "lib/notify/"),
    (5, "lib/runtime.py"), (5, "lib/keys/"), (5, "lib/quotas/"),
    (6, "lib/pool/"), (6, "lib/analytics/"), (6, "lib/demo.py"), (6, "lib/tokens/"),
    # The gateway serves HTTP on the pool and the access tokens; the CLI starts it.
    (6.5, "lib/gateway/"),
    (7, "lib/cli/"), (7, "lib/ui/"), (7, "bench/"),
    (8, "app.py"), (8, "dashboard.py"), (8, "pages/"),
]
SOURCES = sorted(p for folder in ("db", "lib", "bench", "pages") for p in
                 (REPO_ROOT / folder).rglob("*.py")) + [REPO_ROOT / "app.py",
                                                        REPO_ROOT / "dashboard.py"]


def place(path: str) -> tuple[int, str]:
    """(layer, the package or module that owns `path`)."""
    matches = [(layer, prefix) for layer, prefix in LAYERS if path.startswith(prefix)]
    if not matches:
        raise AssertionError(f"{path} is in no layer of docs/architecture.md")
    return max(matches, key=lambda m: len(m[1]))


def module_path(name: str) -> str | None:
    """The repository file of an imported module, or None when it is not ours."""
    parts = name.split(".")
    if parts[0] not in ("db", "lib", "bench", "pages"):
        return None
    base = REPO_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate.relative_to(REPO_ROOT).as_posix()
    return None


def imports(path: Path) -> list[str]:
    """Every module `path` imports, at module level or inside functions."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_every_source_file_has_a_layer():
    for path in SOURCES:
        place(path.relative_to(REPO_ROOT).as_posix())


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_imports_point_down(path):
    rel = path.relative_to(REPO_ROOT).as_posix()
    layer, owner = place(rel)
    upward = []
    for name in imports(path):
        target = module_path(name)
        if target is None:
            continue
        target_layer, target_owner = place(target)
        if target_layer >= layer and target_owner != owner:
            upward.append(f"{name} (layer {target_layer}, {target_owner})")
    assert not upward, f"{rel} (layer {layer}) imports {upward}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_streamlit_and_sql_stay_where_they_belong(path):
    rel = path.relative_to(REPO_ROOT).as_posix()
    names = imports(path)
    streamlit_ok = ("lib/ui/", "pages/", "app.py", "dashboard.py", "bench/")  # bench: pages
    if not rel.startswith(streamlit_ok):
        assert not [n for n in names if n.split(".")[0] in ("streamlit", "streamlit_authenticator")]
    if rel.startswith("pages/"):
        assert not [n for n in names if n.split(".")[0] in ("sqlalchemy", "psycopg2", "db")]
        first = ast.parse(path.read_text()).body
        statements = [s for s in first if not isinstance(s, ast.Expr)]  # after the docstring
        assert ast.unparse(statements[0]) == "from lib.ui.guard import require_admin"
        assert ast.unparse(statements[1]) == "ctx = require_admin()"
