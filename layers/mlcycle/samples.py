"""Synthetic, deterministic sample data for the demo, the tests and the benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd

PLANS = ("basic", "standard", "premium")
REGIONS = ("north", "south", "east", "west", "central")
PAYMENT_METHODS = ("credit_card", "bank_transfer", "paypal", "invoice")
CHURN_RATE = 0.25


def customer_churn(n_rows: int = 5000, seed: int = 7) -> pd.DataFrame:
    """A subscription business: one row per customer, target `churned` ("yes"/"no").

    Churn follows a logistic model of the features plus unobserved noise, so a good model
    reaches a ROC AUC of about 0.85, not 1.0. Missing values are sprinkled where real
    exports have them. Vectorized: a million rows take a few seconds.
    """
    if n_rows < 1:
        raise ValueError("n_rows must be at least 1")
    rng = np.random.default_rng(seed)
    n = n_rows

    width = max(6, len(str(n)))
    customer_id = pd.Series(np.arange(1, n + 1)).astype(str).str.zfill(width).radd("C")

    end = np.datetime64("2024-12-31", "D")
    days_ago = rng.integers(0, 4 * 365, n)
    signup = end - days_ago
    signup_date = np.datetime_as_string(signup, unit="D")
    months_since_signup = days_ago / 30.44
    tenure = np.floor(months_since_signup * rng.beta(2.0, 1.2, n)).astype(np.int64)

    plan_idx = rng.choice(3, n, p=[0.5, 0.35, 0.15])
    region_idx = rng.choice(5, n, p=[0.25, 0.2, 0.2, 0.2, 0.15])
    pay_idx = rng.choice(4, n, p=[0.45, 0.25, 0.18, 0.12])

    discount = np.where(rng.random(n) < 0.7, 0.0, rng.choice([5.0, 10.0, 15.0, 20.0, 25.0], n))
    base_price = np.array([19.99, 39.99, 69.99])[plan_idx]
    monthly = np.round(np.clip(base_price + rng.normal(0, 5, n), 5, None) * (1 - discount / 100), 2)

    # A latent satisfaction drives tickets, sessions and churn; the score only samples it.
    happiness = rng.normal(0, 1, n)
    tickets = rng.poisson(np.exp(0.2 - 0.5 * happiness + 0.1 * (plan_idx == 0)))
    session = np.round(rng.lognormal(2.8 + 0.25 * happiness + 0.15 * plan_idx, 0.5), 1)
    last_login = np.floor(rng.exponential(6 * np.exp(-0.6 * happiness))).astype(np.int64)
    score = np.clip(np.round(3.2 + 1.1 * happiness + rng.normal(0, 0.7, n)), 1, 5)

    logit = (
        0.7 * tickets
        - 0.09 * tenure
        + 0.045 * (monthly - 40)
        + 0.15 * np.minimum(last_login, 45)
        - 0.9 * happiness
        - 0.04 * session
        - 0.075 * discount
        + 1.4 * (pay_idx == 3)
        + 0.6 * (plan_idx == 0)
        + np.array([0.0, 0.4, -0.25, 0.1, 0.5])[region_idx]
        + rng.normal(0, 1.8, n)  # what no column explains
    )
    churned = rng.random(n) < _sigmoid(logit + _intercept(logit, CHURN_RATE))

    def sprinkle_missing(values: np.ndarray, fraction: float) -> np.ndarray:
        return rng.random(len(values)) < fraction

    pay_missing = sprinkle_missing(pay_idx, 0.03)
    session_missing = sprinkle_missing(session, 0.05)
    login_missing = sprinkle_missing(last_login, 0.04)
    score_missing = sprinkle_missing(score, 0.10)

    payment = pd.Series(np.array(PAYMENT_METHODS, dtype=object)[pay_idx], dtype="str")
    payment[pay_missing] = None
    return pd.DataFrame(
        {
            "customer_id": customer_id.astype("str"),
            "signup_date": pd.Series(signup_date, dtype="str"),
            "plan": pd.Series(np.array(PLANS, dtype=object)[plan_idx], dtype="str"),
            "region": pd.Series(np.array(REGIONS, dtype=object)[region_idx], dtype="str"),
            "payment_method": payment,
            "monthly_charges": monthly,
            "tenure_months": tenure,
            "support_tickets_90d": tickets.astype(np.int64),
            "avg_session_minutes": np.where(session_missing, np.nan, session),
            "last_login_days": pd.Series(last_login, dtype="Int64").mask(login_missing),
            "discount_pct": discount,
            "satisfaction_score": pd.Series(score.astype(np.int64), dtype="Int64").mask(
                score_missing
            ),
            "churned": pd.Series(np.where(churned, "yes", "no"), dtype="str"),
        }
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _intercept(logit: np.ndarray, rate: float) -> float:
    """The shift that makes the mean churn probability `rate` (bisection, deterministic)."""
    low, high = -20.0, 20.0
    for _ in range(50):
        mid = (low + high) / 2
        if _sigmoid(logit + mid).mean() < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2
