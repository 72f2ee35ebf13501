"""Shared fixtures: a small generated world (made once per test session) and the real
Kafka broker (`clearline kafka up` normally started it; otherwise it is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from clearline.freezes import Freezes
from clearline.pipelines.world.generate import WorldOptions, generate

# No Hypothesis deadline anywhere: a deadline is a timed assertion (speed lives in bench/),
# and the suite shares two cores with the broker and the flows it starts, so an example
# can take past 200 ms for reasons that are not the code's (test_autofix, load 12).
settings.register_profile("clearline", deadline=None)
settings.load_profile("clearline")

# Two emergency freezes the small world's payout run honours, so every test of it also
# meets held payouts (payout.held, no bank line): a merchant from mid-February, and the
# GBP operating account for the last fortnight.
FREEZES = Freezes.of(
    [
        {"kind": "merchant", "target": "m_00005", "frozen_at": "2026-02-16T00:00:00+00:00"},
        {"kind": "bank_account", "target": "GB29NWBK60161331926819", "frozen_at": "2026-04-20T00:00:00+00:00"},
    ]
)
SMALL = WorldOptions(days=120, merchants=12, seed=11, freezes=FREEZES)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> tuple[Path, dict]:
    """A 120-day, 12-merchant world with discrepancies injected at the configured rate,
    and two freezes holding payouts (FREEZES)."""
    out = tmp_path_factory.mktemp("world")
    return out, generate(SMALL, out)


@pytest.fixture(scope="session")
def clean_world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("clean-world")
    return out, generate(WorldOptions(days=60, merchants=8, seed=5, discrepancy_rate=0.0), out)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    from clearline import config
    from clearline.pipelines import broker

    broker.up()
    return config.bootstrap_servers()
