"""The chat page's files: served at ``/`` and ``/static`` without a session, under the strict
CSP, complete (everything the page loads exists), and free of what that CSP would block or
what could turn text into markup."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from chatrt.middleware.security_headers import STRICT_CSP
from chatrt.web import STATIC_DIR
from tests.support.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PAGE = (STATIC_DIR / "index.html").read_text()
SCRIPTS = sorted((STATIC_DIR / "js").glob("*.js"))
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _loaded_by_page() -> set[str]:
    """Every /static path the page loads: from the HTML, then the module imports, followed
    from module to module as the browser does."""
    paths = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', PAGE))
    todo = [path for path in paths if path.endswith(".js")]
    while todo:
        script = STATIC_DIR / todo.pop().removeprefix("/static/")
        if not script.is_file():
            continue  # reported as a 404 by the test that fetches every path
        for name in re.findall(r'from "\./([\w.]+)"', script.read_text()):
            path = f"/static/{script.parent.relative_to(STATIC_DIR).as_posix()}/{name}"
            if path not in paths:
                paths.add(path)
                todo.append(path)
    return paths


async def test_the_page_is_served_at_the_root_without_a_session_under_the_strict_csp(
    clients: Callable[[], Client],
) -> None:
    client = clients()
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == STRICT_CSP
    assert response.headers["cache-control"] == "no-cache"
    assert '<script type="module" src="/static/js/main.js"></script>' in response.text
    # The API next to it still wants a session.
    assert (await client.get("/api/conversations")).status_code == 401


def test_the_page_loads_every_module_it_ships() -> None:
    # Followed from main.js alone: a module split off but never imported, or an import of a
    # module that is not shipped, shows up here.
    loaded = {path for path in _loaded_by_page() if path.endswith(".js")}
    shipped = {f"/static/js/{script.name}" for script in SCRIPTS}
    assert loaded == shipped
    assert "/static/js/answer.js" in loaded  # imported only by another import of main.js


async def test_every_file_the_page_loads_is_served(clients: Callable[[], Client]) -> None:
    client = clients()
    paths = _loaded_by_page()
    assert "/static/js/answer.js" in paths  # the imports were followed
    for path in sorted(paths):
        response = await client.get(path)
        assert response.status_code == 200, path
        suffix = Path(path).suffix
        assert response.headers["content-type"].startswith(CONTENT_TYPES[suffix]), path
        assert response.headers["content-security-policy"] == STRICT_CSP
    assert (await client.get("/static/nope.js")).status_code == 404


def test_the_page_has_no_inline_code_or_styles() -> None:
    # The CSP blocks all of these; a page that relied on one would silently break.
    assert re.findall(r"<script(?![^>]*\bsrc=)", PAGE) == []
    assert re.findall(r"<style|\sstyle=|\son\w+=", PAGE) == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_never_parse_text_as_markup(script: Path) -> None:
    code = script.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code, f"{script.name} uses {sink}"
    assert "new Function" not in code
