"""Model prices as ``Decimal``: the genai-prices catalogue plus local overrides.

Catalogue prices come from genai-prices' bundled, offline data snapshot; its package version is
recorded as ``price_version`` on every ledger row. Self-hosted models (vLLM, RunPod, Ollama) are not
in any catalogue, so the routing table's ``[prices]`` section gives them a $/million-token price.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import version

from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from pipeline.budget.throttle import estimate_tokens
from pipeline.errors import ConfigError
from pipeline.models import Usage

MILLION = Decimal(1_000_000)
# Claude Sonnet 4: the premium model every call is compared against (DESIGN.md section 4).
BASELINE_REF = "anthropic:claude-sonnet-4-20250514"


@dataclass(frozen=True, slots=True)
class Price:
    """Dollars per million input and output tokens, and where the figure came from."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    version: str

    def cost(self, usage: Usage) -> Decimal:
        """Exact cost of ``usage`` at this price."""
        return self.cost_of_tokens(usage.input_tokens, usage.output_tokens)

    def cost_of_tokens(self, input_tokens: int, output_tokens: int) -> Decimal:
        """Exact cost of a number of input and output tokens at this price."""
        return (
            Decimal(input_tokens) * self.input_per_mtok
            + Decimal(output_tokens) * self.output_per_mtok
        ) / MILLION


class Catalog:
    """Looks up prices by ``provider:model``; overrides win over the catalogue."""

    def __init__(self, overrides: dict[str, tuple[Decimal, Decimal]] | None = None) -> None:
        self._overrides = {
            ref: Price(i, o, "override") for ref, (i, o) in (overrides or {}).items()
        }

    def price(self, ref: str) -> Price:
        """Price of ``provider:model``.

        Raises:
            ConfigError: the model is neither in the catalogue nor overridden.
        """
        if ref in self._overrides:
            return self._overrides[ref]
        provider, _, model = ref.partition(":")
        return _catalogue_price(provider, model)

    def cost(self, ref: str, usage: Usage) -> tuple[Decimal, str]:
        """Cost of one call and the price version used."""
        price = self.price(ref)
        return price.cost(usage), price.version

    def batch_price(self, ref: str, factor: Decimal) -> Price:
        """Price of ``provider:model`` through the provider's batch API.

        genai-prices' batch variant (``processing=batch``) when it has one for the model, else
        the list price times ``factor`` (``LEADPIPE_PROVIDER_BATCH__PRICE_FACTOR``, 0.5: OpenAI
        and Anthropic both bill batches at half the standard rates). An override is a list
        price: the factor applies to it too.

        Raises:
            ConfigError: the model is neither in the catalogue nor overridden.
        """
        listed = self.price(ref)
        if ref not in self._overrides:
            provider, _, model = ref.partition(":")
            batch = _catalogue_batch_price(provider, model)
            if batch is not None and batch.input_per_mtok < listed.input_per_mtok:
                return batch
        return Price(
            listed.input_per_mtok * factor,
            listed.output_per_mtok * factor,
            f"{listed.version} x{factor} batch",
        )

    def knows(self, ref: str) -> bool:
        """Whether ``ref`` can be priced."""
        try:
            self.price(ref)
        except ConfigError:
            return False
        return True


@functools.cache
def _catalogue_price(provider: str, model: str) -> Price:
    try:
        calc = calc_price(
            GPUsage(input_tokens=1_000_000, output_tokens=1_000_000),
            model_ref=model,
            provider_id=provider,
        )
    except LookupError as exc:
        raise ConfigError(f"no price for {provider}:{model} in genai-prices") from exc
    except ValueError as exc:
        raise ConfigError(f"no price for {provider}:{model} in genai-prices: {exc}") from exc
    return Price(
        Decimal(calc.input_price),
        Decimal(calc.output_price),
        f"genai-prices {version('genai-prices')}",
    )


@functools.cache
def _catalogue_batch_price(provider: str, model: str) -> Price | None:
    try:
        calc = calc_price(
            GPUsage(input_tokens=1_000_000, output_tokens=1_000_000),
            model_ref=model,
            provider_id=provider,
            price_context={"processing": "batch"},
        )
    except (LookupError, ValueError):
        return None
    return Price(
        Decimal(calc.input_price),
        Decimal(calc.output_price),
        f"genai-prices {version('genai-prices')} batch",
    )


def estimate_max_cost(
    catalog: Catalog, ref: str, prompt_tokens: int, max_output_tokens: int
) -> Decimal:
    """The most one call can cost: every prompt token plus ``max_output_tokens`` at list price."""
    return catalog.price(ref).cost(Usage(prompt_tokens, max_output_tokens))


def estimate_prompt_tokens(*texts: str) -> int:
    """Prompt tokens of a request's texts (ceil(chars / 4) each)."""
    return sum(estimate_tokens(t) for t in texts)
