"""A seeded customer-journey simulator that knows the right answers.

``simulate(SimulationConfig(...))`` models customers from first touch to churn, plus an
existing customer base signed up before the window, and returns the stream of JSON lines they
produce (valid events per the contract, plus a controlled share of late, resent and malformed
lines) together with the :class:`GroundTruth` a correct pipeline must compute from it:
sessions, funnels, churn, revenue, satisfaction scores, signup starts, product use and totals.
"""

from producers.simulator.config import Imperfections, Rates, SimulationConfig
from producers.simulator.simulation import Simulation, simulate
from producers.simulator.truth import (
    FUNNELS,
    Churn,
    FunnelDefinition,
    FunnelProgress,
    FunnelStep,
    GroundTruth,
    Session,
    SignupStart,
    Source,
    UserTruth,
)

__all__ = [
    "FUNNELS",
    "Churn",
    "FunnelDefinition",
    "FunnelProgress",
    "FunnelStep",
    "GroundTruth",
    "Imperfections",
    "Rates",
    "Session",
    "SignupStart",
    "Simulation",
    "SimulationConfig",
    "Source",
    "UserTruth",
    "simulate",
]
