-- Predicted customer value (pulse clv fit, kpi/clv_model.py): per customer and fitted_until date,
-- the BG/NBD expected purchases over the horizon and probability of being alive, the Gamma-Gamma
-- expected value of a purchase day, and their product, the CLV. Times are in the fit's unit. A
-- refit of the same date replaces its rows (the latest fitted_at wins); read with FINAL.
CREATE TABLE IF NOT EXISTS clv_predictions
(
    user_id                String,
    fitted_until           Date,
    unit                   LowCardinality(String),
    horizon                Float64,
    frequency              UInt32,
    recency                Float64,
    age                    Float64,
    monetary               Float64,
    expected_purchases     Float64,
    probability_alive      Float64,
    expected_average_value Float64,
    clv                    Float64,
    fitted_at              DateTime64(3, 'UTC'),
    inserted_at            DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(fitted_at)
ORDER BY (user_id, fitted_until)
SETTINGS non_replicated_deduplication_window = 1000
