"""What tokens cost: the per-provider prices of ``CHATRT_PROVIDERS``.

Shared by ``GET /api/usage`` and ``chatrt usage-report`` so both show the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatrt.providers.demo import DEMO_PROVIDER
from chatrt.settings import ProviderSettings


def cost_of(
    provider: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    prices: Sequence[ProviderSettings],
) -> float | None:
    """Cost in the unit of the configured prices (per million tokens).

    Matched by provider name. The demo model is free; a provider that is not configured
    (any more) has no known price, so the answer is ``None`` rather than a guess.
    """
    if provider == DEMO_PROVIDER:
        return 0.0
    for entry in prices:
        if entry.name == provider:
            return (
                prompt_tokens * entry.input_price_per_mtok
                + completion_tokens * entry.output_price_per_mtok
            ) / 1_000_000
    return None
