import logging

import pytest

from autonomous.backends import pricing
from autonomous.events import Usage


def test_table_is_dated_with_a_source():
    assert pricing.PRICES_AS_OF.count("-") == 2
    assert pricing.PRICES_SOURCE.startswith("https://")


@pytest.mark.parametrize(
    ("model", "input_", "output"),
    [
        ("claude-opus-4-7", 5.0, 25.0),
        ("claude-opus-4-5-20251101", 5.0, 25.0),
        ("claude-opus-4-1", 15.0, 75.0),
        ("claude-opus-4-20250514", 15.0, 75.0),
        ("claude-sonnet-4-6", 3.0, 15.0),
        ("claude-sonnet-4-5-20250929", 3.0, 15.0),
        ("claude-haiku-4-5-20251001", 1.0, 5.0),
        ("claude-opus-4-7[1m]", 5.0, 25.0),
        ("opus", 5.0, 25.0),
        ("sonnet", 3.0, 15.0),
        ("haiku", 1.0, 5.0),
        ("HAIKU", 1.0, 5.0),
    ],
)
def test_known_models(model, input_, output):
    price = pricing.lookup(model)
    assert price is not None
    assert (price.input, price.output) == (input_, output)
    # The cache multipliers of the price page.
    assert price.cache_write == pytest.approx(input_ * 1.25)
    assert price.cache_read == pytest.approx(input_ * 0.1)


def test_cost_adds_every_token_kind():
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_creation_input_tokens=1_000_000,
        cache_read_input_tokens=1_000_000,
    )
    assert pricing.cost("claude-sonnet-4-6", usage) == pytest.approx(3 + 15 + 3.75 + 0.30)
    assert pricing.cost("claude-haiku-4-5", Usage(input_tokens=1000, output_tokens=100)) == pytest.approx(0.0015)
    assert pricing.cost("claude-haiku-4-5", Usage()) == 0.0


@pytest.mark.parametrize("model", ["claude-sonnet-4-9", "gpt-5", "", "claude-opus-4-7-preview"])
def test_unknown_model_is_priced_as_the_most_expensive_with_a_warning(model, caplog):
    caplog.set_level(logging.WARNING, logger="autonomous.backends.pricing")
    pricing._warned.discard(model)
    usage = Usage(input_tokens=1000, output_tokens=1000)
    assert not pricing.is_known(model)
    value = pricing.cost(model, usage)
    assert value > 0
    most = max(pricing.cost(m, usage) for m in pricing.PRICES)
    assert value == pytest.approx(most)
    assert any("no price for model" in r.getMessage() for r in caplog.records)
