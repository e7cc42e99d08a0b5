"""The KPI layer: metric formulas and models, pure, apart from the ClickHouse views that feed them."""
