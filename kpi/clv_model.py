"""Predictive customer lifetime value: BG/NBD for repeat purchases, Gamma-Gamma for spend.

**Data.** :func:`rfm_summary` turns purchases (customer id, event time in epoch ms UTC, amount)
into one :class:`CustomerRfm` per customer as of a date. Purchases are summed per UTC day,
because the models count *purchase occasions*: an order split into three payments on one day
is one occasion, not three. Then, in the chosen unit (day or week):

- ``frequency``: the days with a purchase after the first (repeat occasions);
- ``recency``: from the first purchase day to the last;
- ``T``: from the first purchase day to the date's day;
- ``monetary``: the mean value of the repeat purchase days (0 for a one-day customer). The
  first day is left out, as the published method does: it is often unlike the rest (a
  welcome offer, an initial kit), and leaving it out keeps spend independent of acquisition.

**Models.** BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while
alive a customer buys as a Poisson process of rate λ ~ Gamma(r, α), and after each repeat
purchase drops out with probability p ~ Beta(a, b). Gamma-Gamma (Fader & Hardie 2013, "The
Gamma-Gamma model of monetary value"): a customer's purchase values are Gamma(p, ν), ν ~
Gamma(q, γ), independent of the purchase process. Both are fitted by maximum likelihood with
``scipy.optimize.minimize`` (L-BFGS-B, analytic gradient) over the logarithms of the
parameters, which keeps them positive without constraints and puts scale parameters (α, γ,
which grow with the unit and the currency) on the same footing as the shapes. The
log-likelihoods are written in logs throughout (``gammaln``, ``betaln``, ``logaddexp``): the
textbook products overflow for customers with hundreds of purchases (Fader & Hardie 2013,
"Overcoming the BG/NBD model's #NUM! error problem").

**Predictions.** :func:`expected_purchases` (the conditional expectation over the next ``t``
units), :func:`probability_alive`, :func:`expected_average_value` (the Gamma-Gamma posterior
mean of a purchase day's value) and :func:`clv`, their product over a horizon, optionally
discounted. All but :func:`clv` are vectorised with numpy: pass arrays to score a whole
customer base in one call.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import OptimizeResult, minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

Unit = Literal["day", "week"]
FloatArray = npt.NDArray[np.float64]

DAY_MS = 86_400_000
DAYS_PER_UNIT: dict[str, int] = {"day": 1, "week": 7}

MIN_CUSTOMERS = 10
SERIES_TERMS = 10_000  # of 2F1's power series, where scipy's hyp2f1 fails (see _hyp2f1)
"""The fewest customers (repeat buyers, for Gamma-Gamma) a fit accepts. Below this, a 3- or
4-parameter maximum likelihood fit describes the handful of customers, not a population: the
estimates are noise. It is a floor against nonsense, not a promise of precision."""

# Log-parameters stay within e^±20 (2e-9 .. 5e8): wide enough for any unit and currency, narrow
# enough that exp() and the special functions never overflow while the optimiser explores.
_LOG_BOUND = 20.0


class CannotFitError(ValueError):
    """The data cannot support a fit: too few customers, no repeat buyers, or no convergence."""


@dataclass(frozen=True, slots=True)
class CustomerRfm:
    """One customer's purchase history as of a date, in the summary's unit (see the module doc)."""

    customer_id: str
    frequency: int
    recency: float
    T: float
    monetary: float


@dataclass(frozen=True, slots=True)
class BgNbdFit:
    """BG/NBD maximum likelihood estimates: λ ~ Gamma(shape r, rate alpha), p ~ Beta(a, b).

    ``alpha`` is in the unit of the summary it was fitted on (a rate's reciprocal scale), so a
    fit only makes predictions for summaries in that same unit. ``customers`` is the number fitted.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int


@dataclass(frozen=True, slots=True)
class GammaGammaFit:
    """Gamma-Gamma maximum likelihood estimates: value ~ Gamma(p, ν), ν ~ Gamma(shape q, rate gamma).

    ``gamma`` is in the currency of the amounts. ``customers`` is the number of repeat buyers fitted.
    """

    p: float
    q: float
    gamma: float
    log_likelihood: float
    customers: int


def rfm_summary(purchases: Iterable[tuple[str, int, float]], until_ms: int, unit: Unit) -> list[CustomerRfm]:
    """Summarise purchases (customer id, epoch ms UTC, amount) as of ``until_ms``, sorted by customer id.

    Purchases after ``until_ms`` are ignored: the summary is what was known on that date, so a
    model fitted on it can be checked against what came later. Times are counted in whole UTC
    days between calendar days (a purchase at 23:59 and the date at 00:01 the next day are one
    day apart), then divided by 7 for weeks.
    """
    days_per_unit = _days_per_unit(unit)
    until_day = until_ms // DAY_MS
    daily: defaultdict[str, defaultdict[int, float]] = defaultdict(lambda: defaultdict(float))
    for customer_id, event_ms, amount in purchases:
        if event_ms <= until_ms:
            daily[customer_id][event_ms // DAY_MS] += amount
    summaries = []
    for customer_id in sorted(daily):
        totals = daily[customer_id]
        first, last = min(totals), max(totals)
        repeat_values = [value for day, value in totals.items() if day != first]
        summaries.append(CustomerRfm(
            customer_id=customer_id,
            frequency=len(repeat_values),
            recency=(last - first) / days_per_unit,
            T=(until_day - first) / days_per_unit,
            monetary=math.fsum(repeat_values) / len(repeat_values) if repeat_values else 0.0,
        ))
    return summaries


def fit_bgnbd(customers: Sequence[CustomerRfm]) -> BgNbdFit:
    """Fit BG/NBD by maximum likelihood on all customers, one-time buyers included.

    One-time buyers matter: how many never came back is what pins down the purchase rates.
    Raises :class:`CannotFitError` for fewer than :data:`MIN_CUSTOMERS` customers, when nobody
    bought on a second day (the likelihood then grows without bound as the rates go to zero),
    or when the optimiser does not converge.
    """
    if len(customers) < MIN_CUSTOMERS:
        raise CannotFitError(
            f"BG/NBD needs at least {MIN_CUSTOMERS} customers to fit, got {len(customers)}"
        )
    x, t_x, T = _columns(customers, "frequency", "recency", "T")
    if not np.any(x > 0):
        raise CannotFitError(
            f"none of the {len(customers)} customers bought again on a later day, so there is no "
            "repeat behaviour for BG/NBD to learn from; wait for more history or pick a later date"
        )
    # Start at r = 1 (exponential rates) with the pooled purchase rate, a = 1, b = 3 (as BTYD):
    # alpha follows the data's time unit, so a fixed start would be far off in days or weeks.
    start = np.log([1.0, T.sum() / x.sum(), 1.0, 3.0])
    result = _maximise(lambda theta: _bgnbd_log_likelihood(theta, x, t_x, T), start, "BG/NBD")
    r, alpha, a, b = np.exp(result.x)
    return BgNbdFit(
        r=float(r), alpha=float(alpha), a=float(a), b=float(b),
        log_likelihood=float(-result.fun * len(x)), customers=len(x),
    )


def fit_gamma_gamma(customers: Sequence[CustomerRfm]) -> GammaGammaFit:
    """Fit Gamma-Gamma by maximum likelihood on the repeat buyers with a positive mean spend.

    One-time buyers carry no repeat spend (their ``monetary`` is 0 by definition), so, as in the
    published method, only customers with ``frequency > 0`` are fitted; of those, a mean of zero
    or less (refunds netted out) is outside a Gamma model and is left out too. Raises
    :class:`CannotFitError` for fewer than :data:`MIN_CUSTOMERS` such customers or no convergence.
    """
    x, m = _columns(customers, "frequency", "monetary")
    fitted = (x > 0) & (m > 0)
    x, m = x[fitted], m[fitted]
    if len(x) < MIN_CUSTOMERS:
        raise CannotFitError(
            f"Gamma-Gamma needs at least {MIN_CUSTOMERS} repeat buyers (customers who bought again on "
            f"a later day, with a positive mean spend) to fit, got {len(x)} of {len(customers)} customers"
        )
    # Start at p = 1, q = 2 with gamma matching the population mean spend p * gamma / (q - 1).
    start = np.log([1.0, 2.0, m.mean()])
    result = _maximise(lambda theta: _gamma_gamma_log_likelihood(theta, x, m), start, "Gamma-Gamma")
    p, q, gamma = np.exp(result.x)
    return GammaGammaFit(
        p=float(p), q=float(q), gamma=float(gamma),
        log_likelihood=float(-result.fun * len(x)), customers=len(x),
    )


def probability_alive(fit: BgNbdFit, frequency: npt.ArrayLike, recency: npt.ArrayLike, T: npt.ArrayLike) -> FloatArray:
    """P(alive | frequency, recency, T): the chance the customer has not dropped out by T.

    1 / (1 + [x > 0] a / (b+x-1) ((α+T)/(α+t_x))^(r+x)) (Fader, Hardie & Lee 2008, "Computing
    P(alive) using the BG/NBD model"), the denominator of the conditional expectation.

    It is 1 for a one-time buyer (BG/NBD drops out only after a repeat purchase). Computed as a
    logistic of the log odds, so a frequent buyer long silent gives 0, not an overflow.
    """
    x, t_x, T_ = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, T))
    return expit(-_log_odds_dead(fit, x, t_x, T_))


def expected_purchases(
    fit: BgNbdFit, t: npt.ArrayLike, frequency: npt.ArrayLike, recency: npt.ArrayLike, T: npt.ArrayLike,
) -> FloatArray:
    """E[purchases in (T, T + t] | frequency, recency, T]: FHL 2005, equation (10).

    The equation is ((a+b+x-1)/(a-1)) (1 - ((α+T)/(α+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)) P(alive),
    z = t/(α+T+t). The power underflows and the 2F1 overflows for large x, so the 2F1 is taken
    through Euler's transformation, which cancels them analytically:
    ((α+T)/(α+T+t))^(r+x) 2F1(r+x, b+x; c; z) = (1-z)^(a-1) 2F1(a+b-1-r, a-1; c; z).
    With frequency = recency = T = 0 it is the unconditional E[X(t)] of a new customer (FHL eq. 9).
    """
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    t_, x, t_x, T_ = (np.asarray(v, dtype=np.float64) for v in (t, frequency, recency, T))
    z = t_ / (alpha + T_ + t_)
    c = a + b + x - 1.0
    if_alive = c / (a - 1.0) * (1.0 - (1.0 - z) ** (a - 1.0) * _hyp2f1(a + b - 1.0 - r, a - 1.0, c, z))
    return if_alive * expit(-_log_odds_dead(fit, x, t_x, T_))


def _hyp2f1(a: float, b: float, c: FloatArray, z: FloatArray) -> FloatArray:
    """Gauss's 2F1, by its power series where scipy's gives up.

    A population that buys like one Poisson process fits with r and alpha in the tens of
    thousands (the Gamma mixing narrows to a point), and scipy's hyp2f1 returns NaN for a first
    parameter that large and negative. z = t/(alpha+T+t) is then tiny, so the series' terms
    shrink fast: a handful of them give the value to machine precision.
    """
    value = np.asarray(hyp2f1(a, b, c, z), dtype=np.float64)
    failed = ~np.isfinite(value)
    if not failed.any():
        return value
    c_, z_ = np.broadcast_to(c, value.shape)[failed], np.broadcast_to(z, value.shape)[failed]
    term = np.ones_like(z_)
    total = term.copy()
    for k in range(SERIES_TERMS):
        term = term * (a + k) * (b + k) / ((c_ + k) * (k + 1.0)) * z_
        total += term
        if np.all(np.abs(term) <= 1e-16 * np.abs(total)):
            value = value.copy()
            value[failed] = total
            return value
    raise CannotFitError(f"the fitted BG/NBD parameters put 2F1({a:.6g}, {b:.6g}; c; z) out of reach of its series")


def expected_average_value(fit: GammaGammaFit, frequency: npt.ArrayLike, monetary: npt.ArrayLike) -> FloatArray:
    """E[value of a purchase day | frequency, monetary]: the Gamma-Gamma posterior mean (Fader & Hardie 2013).

    (γ + m x) p / (p x + q - 1): a weighted mean of the population mean p γ / (q - 1) and the
    customer's own mean m, weighted towards m as repeat days accumulate. A one-time buyer gets
    the population mean. Raises ``ValueError`` if q is so small that the posterior has no mean
    (p x + q <= 1): the spend distribution is then too heavy-tailed to value anyone by its mean.
    """
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary, dtype=np.float64)
    denominator = fit.p * x + fit.q - 1.0
    if np.any(denominator <= 0):
        raise ValueError(
            f"the Gamma-Gamma fit (q = {fit.q:.3g}) gives spend no finite mean for customers with "
            f"frequency <= {(1.0 - fit.q) / fit.p:.3g}, so their expected value is undefined"
        )
    return (fit.gamma + m * x) * fit.p / denominator


def clv(
    bgnbd: BgNbdFit, gg: GammaGammaFit, customer: CustomerRfm, horizon: float, discount_rate_per_unit: float = 0.0,
) -> float:
    """Expected value of ``customer``'s purchases over the next ``horizon`` units.

    CLV = expected purchases x expected value of a purchase, the two taken as independent (the
    Gamma-Gamma assumption). With a discount rate d > 0 the purchases expected in unit k (from
    k-1 to k, the last unit possibly partial) are valued at the end of that unit, divided by
    (1 + d)^k: the sum over k of (E[X(k)] - E[X(k-1)]) x value / (1 + d)^k. Unit-end discounting
    is the usual discrete DCF convention (it is what ``lifetimes`` does); it slightly undervalues
    purchases early in a unit, by less than a factor (1 + d). With d = 0 it is E[X(horizon)] x value.
    """
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0 units, got {horizon}")
    if discount_rate_per_unit < 0:
        raise ValueError(f"discount_rate_per_unit must be >= 0, got {discount_rate_per_unit}")
    value = expected_average_value(gg, customer.frequency, customer.monetary)
    if discount_rate_per_unit == 0:
        unit_ends = np.array([horizon], dtype=np.float64)
    else:
        unit_ends = np.minimum(np.arange(1.0, math.ceil(horizon) + 1.0), horizon)
    cumulative = expected_purchases(bgnbd, unit_ends, customer.frequency, customer.recency, customer.T)
    per_unit = np.diff(cumulative, prepend=0.0)
    return float(value * np.sum(per_unit / (1.0 + discount_rate_per_unit) ** unit_ends))


def _days_per_unit(unit: str) -> int:
    try:
        return DAYS_PER_UNIT[unit]
    except KeyError:
        raise ValueError(f"unit must be one of {sorted(DAYS_PER_UNIT)}, got {unit!r}") from None


def _columns(customers: Sequence[CustomerRfm], *names: str) -> tuple[FloatArray, ...]:
    return tuple(
        np.fromiter((getattr(customer, name) for customer in customers), dtype=np.float64, count=len(customers))
        for name in names
    )


def _log_odds_dead(fit: BgNbdFit, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """log(P(dead) / P(alive)) = log(a / (b+x-1)) + (r+x) log((α+T)/(α+t_x)) for x > 0, -inf for x = 0."""
    repeat = x > 0
    x_repeat = np.where(repeat, x, 1.0)  # keeps b + x - 1 > 0 where the value is discarded anyway
    log_odds = (
        np.log(fit.a / (fit.b + x_repeat - 1.0))
        + (fit.r + x) * (np.log(fit.alpha + T) - np.log(fit.alpha + t_x))
    )
    return np.where(repeat, log_odds, -np.inf)


def _bgnbd_log_likelihood(
    log_params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray,
) -> tuple[float, FloatArray]:
    """Mean log-likelihood per customer and its gradient in log-parameters (FHL 2005, equation 6).

    L = Γ(r+x) α^r / Γ(r) x [B(a, b+x) / B(a, b) (α+T)^-(r+x)
                              + [x > 0] B(a+1, b+x-1) / B(a, b) (α+t_x)^-(r+x)]
    The two terms (alive at T; dropped out right after the last purchase) are added in logs.
    """
    r, alpha, a, b = np.exp(log_params)
    repeat = x > 0
    x_repeat = np.where(repeat, x, 1.0)  # the second term exists only for x > 0
    alive = betaln(a, b + x) - (r + x) * np.log(alpha + T)
    dead = np.where(repeat, betaln(a + 1.0, b + x_repeat - 1.0) - (r + x) * np.log(alpha + t_x), -np.inf)
    log_likelihood = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b) + np.logaddexp(alive, dead)
    w = expit(dead - alive)  # the dead term's share of the likelihood
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - (1 - w) * np.log(alpha + T) - w * np.log(alpha + t_x)
    d_alpha = r / alpha - (r + x) * ((1 - w) / (alpha + T) + w / (alpha + t_x))
    d_a = ((1 - w) * digamma(a) + w * digamma(a + 1.0) - digamma(a + b + x)) - (digamma(a) - digamma(a + b))
    d_b = (
        ((1 - w) * digamma(b + x) + w * np.where(repeat, digamma(b + x_repeat - 1.0), 0.0) - digamma(a + b + x))
        - (digamma(b) - digamma(a + b))
    )
    gradient = np.array([d_r.mean() * r, d_alpha.mean() * alpha, d_a.mean() * a, d_b.mean() * b])
    return float(log_likelihood.mean()), gradient


def _gamma_gamma_log_likelihood(log_params: FloatArray, x: FloatArray, m: FloatArray) -> tuple[float, FloatArray]:
    """Mean log-likelihood per customer and its gradient in log-parameters (Fader & Hardie 2013).

    f(m | x) = Γ(px+q) / (Γ(px) Γ(q)) γ^q m^(px-1) x^(px) / (γ + m x)^(px+q): the density of the
    mean of x Gamma(p, ν) values, ν integrated out.
    """
    p, q, gamma = np.exp(log_params)
    px = p * x
    log_spend = np.log(gamma + m * x)
    log_likelihood = (
        gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
        + (px - 1.0) * np.log(m) + px * np.log(x) - (px + q) * log_spend
    )
    d_p = x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - log_spend)
    d_q = digamma(px + q) - digamma(q) + np.log(gamma) - log_spend
    d_gamma = q / gamma - (px + q) / (gamma + m * x)
    gradient = np.array([d_p.mean() * p, d_q.mean() * q, d_gamma.mean() * gamma])
    return float(log_likelihood.mean()), gradient


def _maximise(
    mean_log_likelihood: Callable[[FloatArray], tuple[float, FloatArray]], start: FloatArray, model: str,
) -> OptimizeResult:
    """Maximise a mean log-likelihood over log-parameters; raise CannotFitError if it does not converge.

    The mean rather than the sum keeps the optimiser's tolerances independent of the sample size.
    """
    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        value, gradient = mean_log_likelihood(log_params)
        return -value, -gradient

    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(start)
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds)
    if not result.success or not np.isfinite(result.fun):
        raise CannotFitError(
            f"the {model} maximum likelihood fit did not converge ({result.message}): the customers likely "
            "differ too little for the model to tell its parameters apart (e.g. all spend the same)"
        )
    return result
