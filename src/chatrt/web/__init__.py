"""The browser client: a chat page at ``/`` and its static assets under ``/static``.

Plain HTML, CSS and JavaScript modules shipped inside the package (no build step, nothing
loaded from elsewhere), so the page runs under the app's strict Content-Security-Policy and
speaks only the public protocol (REST under ``/api``, the WebSocket at ``/ws``).
See docs/client.md.
"""

from __future__ import annotations

from pathlib import Path

from litestar import MediaType, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

STATIC_DIR = Path(__file__).parent / "static"
# Revalidate every time: a new release must never run with the previous release's modules.
REVALIDATE = CacheControlHeader(no_cache=True)


def web_routes() -> list[ControllerRouterHandler]:
    """The page and its assets, reachable without a session (the page signs in itself)."""
    page = (STATIC_DIR / "index.html").read_bytes()

    @get(
        "/",
        exclude_from_auth=True,
        include_in_schema=False,
        media_type=MediaType.HTML,
        cache_control=REVALIDATE,
        sync_to_thread=False,
    )
    def index() -> Response[bytes]:
        return Response(page, media_type=MediaType.HTML)

    assets = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        name="web",
        cache_control=REVALIDATE,
        opt={"exclude_from_auth": True},
        include_in_schema=False,
    )
    return [index, assets]
