"""Build the provider chain the settings describe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatrt.providers.base import Provider
from chatrt.providers.chain import ProviderChain
from chatrt.providers.demo import DemoProvider
from chatrt.providers.openai_compat import OpenAICompatibleProvider
from chatrt.settings import Settings


@asynccontextmanager
async def provider_chain(settings: Settings) -> AsyncIterator[ProviderChain]:
    """``CHATRT_PROVIDERS`` in fallback order, or the offline demo model; clients closed on exit."""
    remote = [
        OpenAICompatibleProvider(
            p,
            connect_timeout_s=settings.generation.provider_connect_timeout_s,
            read_timeout_s=settings.generation.provider_read_timeout_s,
        )
        for p in settings.providers
    ]
    providers: list[Provider] = list(remote) or [
        DemoProvider(chunk_delay_s=settings.demo.chunk_delay_ms / 1000)
    ]
    try:
        yield ProviderChain(providers)
    finally:
        for provider in remote:
            await provider.aclose()
