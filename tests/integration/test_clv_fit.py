"""``pulse clv fit`` against the real pipeline: purchases read from ClickHouse, a prediction per paying customer."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from ops.clv import fit_clv
from ops.reader import run_query
from producers import EventProducer, publish_lines
from producers.simulator import SimulationConfig, simulate
from pulse.settings import Settings
from tests.integration.test_pipeline_e2e import wait_for_pipeline

pytestmark = pytest.mark.integration

FITTED_AT = "toUnixTimestamp64Milli(fitted_at)"
PREDICTIONS = "SELECT count(), countIf(probability_alive BETWEEN 0 AND 1 AND clv >= 0) FROM clv_predictions FINAL"


def test_every_paying_customer_gets_a_prediction(pipeline: Settings) -> None:
    settings = pipeline
    simulation = simulate(SimulationConfig(customers=800, days=60, seed=5))
    with EventProducer.from_settings(settings) as producer:
        publish_lines(list(simulation.lines()), "simulation", producer)
    wait_for_pipeline(settings)
    until = datetime.fromtimestamp(simulation.truth.config.end_ms / 1000, timezone.utc).date()
    paying = simulation.truth.totals["paying_customers"]

    fit = fit_clv(settings, until, "week", 52.0, log=print)
    assert fit["customers"] == paying > 100
    assert all(fit["bgnbd"][name] > 0 for name in ("r", "alpha", "a", "b"))
    deadline = time.monotonic() + 60
    while (found := run_query(settings, PREDICTIONS).rows[0])[0] < paying:
        assert time.monotonic() < deadline, f"{found[0]} of {paying} predictions in ClickHouse after 60 s"
        time.sleep(0.5)
    assert found == [paying, paying]

    first_fit = run_query(settings, f"SELECT max({FITTED_AT}) FROM clv_predictions FINAL").scalar()
    fit_clv(settings, until, "week", 52.0, log=print)  # a refit of the date replaces its rows
    deadline = time.monotonic() + 60
    while run_query(settings, f"SELECT min({FITTED_AT}) FROM clv_predictions FINAL").scalar() <= first_fit:
        assert time.monotonic() < deadline, "the refit's predictions did not replace the first ones in 60 s"
        time.sleep(0.5)
    assert run_query(settings, PREDICTIONS).rows[0] == [paying, paying]
