"""The shipped Grafana dashboards as the tests see them: every query of every panel, with its datasource.

Grafana nests the panels of a collapsed row inside the row, so both levels are walked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

GRAFANA_DIR = Path(__file__).parents[1] / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel: what Grafana sends to the datasource (PromQL ``expr`` or ClickHouse ``rawSql``)."""

    dashboard: str
    panel: str
    ref_id: str
    datasource: str  # the datasource uid
    text: str

    def __str__(self) -> str:  # pytest ids
        return f"{self.dashboard}: {self.panel} ({self.ref_id})"


def load(name: str) -> dict[str, Any]:
    """The dashboard ``deploy/grafana/dashboards/<name>.json``."""
    return orjson.loads((DASHBOARDS_DIR / f"{name}.json").read_bytes())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(name: str) -> list[PanelQuery]:
    """Every query of the dashboard ``name``, in panel order."""
    found = []
    for panel in panels(load(name)):
        for target in panel["targets"]:
            datasource = target.get("datasource", panel["datasource"])["uid"]
            text = target.get("expr", target.get("rawSql"))
            found.append(PanelQuery(name, panel["title"], target["refId"], datasource, text))
    return found
