"""``pulse clv fit``: the predictive CLV model fitted on the purchases in ClickHouse, its predictions sent to the sink.

Purchases (``purchase`` events, their ``amount``) up to the end of a UTC date are read from
``events``, summarised per customer (:func:`kpi.clv_model.rfm_summary`), and BG/NBD and
Gamma-Gamma are fitted on them. Per customer, the expected purchases over the horizon, the
probability of being alive, the expected value of a purchase day and their product, the CLV,
go to the ``clv-predictions`` topic, which the sink writes to ``clv_predictions``: the sink is
the only writer of ClickHouse. Refunds are not netted out; the model counts what was bought.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from kpi.clv_model import (
    BgNbdFit,
    CustomerRfm,
    GammaGammaFit,
    Unit,
    expected_average_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    probability_alive,
    rfm_summary,
)
from ops.reader import run_query
from pulse.outputs import CLV_PREDICTIONS
from pulse.settings import Settings
from pulse.topics import Topics
from stream_jobs.output_producer import OutputProducer
from stream_jobs.publishing import output_records

EPOCH_DAY = date(1970, 1, 1)
PURCHASES_SQL = """
SELECT user_id, toUnixTimestamp64Milli(ts), JSONExtractFloat(props, 'amount')
FROM events FINAL
WHERE type = 'purchase' AND ts < toDateTime64('{end}', 3, 'UTC')
"""


def end_of_day_ms(day: date) -> int:
    """The last millisecond of a UTC date: purchases on the date itself count."""
    midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    return int(midnight.timestamp() * 1000) - 1


def fit_clv(settings: Settings, until: date, unit: Unit, horizon: float,
            log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Fit on the purchases up to ``until``, publish every customer's prediction; the fit as JSON-able dict."""
    end = until + timedelta(days=1)
    rows = run_query(settings, PURCHASES_SQL.format(end=end.isoformat())).rows
    log(f"read {len(rows):,} purchases up to {until.isoformat()}")
    customers = rfm_summary(((user, int(ts), float(amount)) for user, ts, amount in rows), end_of_day_ms(until), unit)
    log(f"fitting BG/NBD and Gamma-Gamma on {len(customers):,} customers")
    bgnbd, gamma_gamma = fit_bgnbd(customers), fit_gamma_gamma(customers)
    predictions = prediction_rows(customers, bgnbd, gamma_gamma, until, unit, horizon)
    publish(settings, predictions)
    log(f"sent {len(predictions):,} predictions to {CLV_PREDICTIONS.table}")
    return {
        "until": until.isoformat(),
        "unit": unit,
        "horizon": horizon,
        "customers": len(customers),
        "bgnbd": {"r": bgnbd.r, "alpha": bgnbd.alpha, "a": bgnbd.a, "b": bgnbd.b,
                  "log_likelihood": bgnbd.log_likelihood},  # fmt: skip
        "gamma_gamma": {"p": gamma_gamma.p, "q": gamma_gamma.q, "gamma": gamma_gamma.gamma,
                        "log_likelihood": gamma_gamma.log_likelihood, "customers": gamma_gamma.customers},  # fmt: skip
    }


def prediction_rows(customers: list[CustomerRfm], bgnbd: BgNbdFit, gamma_gamma: GammaGammaFit, until: date,
                    unit: Unit, horizon: float) -> list[dict[str, Any]]:  # fmt: skip
    """One ``clv_predictions`` row per customer (the model's functions run over all customers at once)."""
    frequency = [c.frequency for c in customers]
    recency = [c.recency for c in customers]
    age = [c.T for c in customers]
    purchases = expected_purchases(bgnbd, horizon, frequency, recency, age)
    alive = probability_alive(bgnbd, frequency, recency, age)
    value = expected_average_value(gamma_gamma, frequency, [c.monetary for c in customers])
    fitted_at = time.time_ns() // 1_000_000
    return [
        {
            "user_id": customer.customer_id,
            "fitted_until": (until - EPOCH_DAY).days,  # a Date column takes days since 1970-01-01
            "unit": unit,
            "horizon": horizon,
            "frequency": customer.frequency,
            "recency": customer.recency,
            "age": customer.T,
            "monetary": customer.monetary,
            "expected_purchases": float(purchases[i]),
            "probability_alive": float(alive[i]),
            "expected_average_value": float(value[i]),
            "clv": float(purchases[i] * value[i]),
            "fitted_at": fitted_at,
        }
        for i, customer in enumerate(customers)
    ]


def publish(settings: Settings, rows: list[dict[str, Any]]) -> None:
    """Send the rows to the sink's topic and wait until Kafka acknowledged every one."""
    topic = Topics.with_prefix(settings.topic_prefix).output(CLV_PREDICTIONS)
    producer = OutputProducer(settings.bootstrap)
    for _, value in output_records({CLV_PREDICTIONS: rows}):
        refused = producer.send(topic, value)
        if refused is not None:
            raise RuntimeError(f"Kafka refused a batch of predictions for {topic}: {refused}")
    asyncio.run(producer.confirm())
