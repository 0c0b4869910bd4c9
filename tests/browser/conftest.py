"""Fixtures for the browser tests: Debian's Chromium and real ``chatrt serve`` processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ViewportSize

from tests.realtime.conftest import providers_env
from tests.support.browser import RECORD_ANSWERS, Tab, chromium, chromium_available
from tests.support.fake_openai import FakeOpenAI
from tests.support.instances import Instance

DESKTOP: ViewportSize = {"width": 1000, "height": 650}
PHONE: ViewportSize = {"width": 390, "height": 760}
SCRIPTED = "browser"  # the fake model server's provider name for these tests


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module-scoped, not session-scoped: Playwright's sync API keeps an event loop of its
    # own, which must be gone before other modules' async tests start theirs.
    if not chromium_available():
        pytest.fail("chromium is missing: scripts/bootstrap dev installs it")
    with chromium() as launched:
        yield launched


@dataclass
class Web:
    """Browser contexts (a user's browser each) and their tabs, checked at teardown."""

    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    tabs: list[Tab] = field(default_factory=list)

    def context(self, locale: str = "en-US", viewport: ViewportSize = DESKTOP) -> BrowserContext:
        context = self.browser.new_context(locale=locale, viewport=viewport)
        context.add_init_script(RECORD_ANSWERS)
        self.contexts.append(context)
        return context

    def tab(self, context: BrowserContext, base_url: str, path: str = "/") -> Tab:
        tab = Tab.open(context, base_url, path)
        self.tabs.append(tab)
        return tab


@pytest.fixture
def web(browser: Browser) -> Iterator[Web]:
    web = Web(browser)
    yield web
    for context in web.contexts:
        context.close()
    for tab in web.tabs:
        tab.check()


@pytest.fixture
def screenshot() -> Callable[[Tab, str], None]:
    """``screenshot(tab, name)`` saves docs pictures when CHATRT_SCREENSHOTS_DIR is set."""
    target = os.environ.get("CHATRT_SCREENSHOTS_DIR")

    def take(tab: Tab, name: str) -> None:
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            tab.page.screenshot(path=str(Path(target) / f"{name}.png"))

    return take


def _instance(directory: Path, name: str, env: dict[str, str]) -> Iterator[Instance]:
    base = {
        # A fresh file: `chatrt serve` migrates the embedded default's database itself.
        "CHATRT_DATABASE_URL": f"sqlite:///{directory / 'chatrt.sqlite3'}",
        "CHATRT_MAX_CONTENT_CHARS": "2000",
        "CHATRT_CHECKPOINT_INTERVAL_S": "0.3",
    }
    with Instance(base | env, directory, name) as instance:
        yield instance


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """``chatrt serve`` on the embedded default: SQLite, in-process stores, the demo model
    (slowed so an answer streams for about two seconds)."""
    directory = tmp_path_factory.mktemp("browser-embedded")
    yield from _instance(directory, "embedded", {"CHATRT_DEMO_CHUNK_DELAY_MS": "40"})


@pytest.fixture(scope="module")
def scripted(
    fake_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instance]:
    """The same, answering from the fake model server: each test scripts speed and text."""
    directory = tmp_path_factory.mktemp("browser-scripted")
    env = {"CHATRT_PROVIDERS": providers_env(fake_server, SCRIPTED)}
    yield from _instance(directory, "scripted", env)
