"""Running a simulation: the model's bursts feed the ground truth and the emitter side by side."""

from __future__ import annotations

from collections.abc import Iterator

from producers.simulator.bursts import EventIds
from producers.simulator.config import SimulationConfig
from producers.simulator.emission import Emitter
from producers.simulator.devices import Browsers
from producers.simulator.journeys import SYSTEM_USER, generate_bursts, user_id_of
from producers.simulator.truth import GroundTruth, Tally


class Simulation:
    """The emitted stream of one run and the truth a correct pipeline must compute from it."""

    __slots__ = ("_lines", "truth")

    def __init__(self, truth: GroundTruth, lines: list[bytes]) -> None:
        self.truth = truth
        self._lines = lines

    def lines(self) -> Iterator[bytes]:
        """The JSON lines (no trailing newline) in emission order; may be iterated again."""
        return iter(self._lines)


def simulate(config: SimulationConfig) -> Simulation:
    """Generate the whole run in memory; the same config gives byte-identical lines and truth."""
    tally = Tally()
    emitter = Emitter(config.imperfections, config.seed)
    existing = (user_id_of(number) for number in range(config.customers, config.customers + config.existing_count))
    browsers = Browsers(existing) if config.anonymous_visits else None
    for user_id, events in generate_bursts(config, EventIds(f"{config.seed}-")):
        tally.add(user_id, events)
        emitter.add(events if browsers is None or user_id == SYSTEM_USER else browsers.sent(user_id, events))
    lines = emitter.finish()
    return Simulation(tally.finish(config, emitter.counts), lines)
