"""A backtest: replay events through the batch feature runtime, score each underwriting
request of a window as the model would have seen it, join the outcome once it matured,
and measure (`clearline.models.backtest`) — with checks that no feature saw the future.

The features come from the same function that builds training sets
(`clearline.features.batch.order_features`, point-in-time by construction: each order only sees
events strictly before it). A backtest of a feature set is only as honest as that
function, so the run checks it:

* **replay** — for a sample of orders, the features are recomputed from only the events
  up to the order's decision time (a truncated archive, as it stood then); any value that
  differs used an event from after the decision. This is the point-in-time check: it
  needs no knowledge of how the feature was computed.
* **feature AUC** — a single feature that ranks the outcomes almost perfectly is too good
  to be true for application data (it is usually the outcome itself, renamed).
* **oracle** — on a generated world the generator's true default probabilities give the
  best AUC any model can reach; a model above it (beyond a margin) knows the future.
* **feature time** — when the features come as stored feature rows (e.g. `clearline.models.pit.join`
  over the Feast offline history, which carries `feature_available_at`), no row may have
  become known after the decision it was joined to.

Orders count only once their outcome window has closed before the last event (a young
order has no outcome yet; counting it as good would flatter every model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from clearline.features import order_features
from clearline.models import backtest as bt
from clearline.models.labels import outcomes
from clearline.models.pit import AVAILABLE
from clearline.models.scorer import Scorer
from clearline.models.train import frame

Featurize = Callable[[pl.DataFrame], pl.DataFrame]


@dataclass(frozen=True)
class Settings:
    outcome_window_days: int
    lgd: float
    cutoffs: tuple[float, ...]
    approve_below: float
    replay_orders: int = 20
    max_feature_auc: float = 0.95
    oracle_margin: float = 0.02

    @classmethod
    def from_config(cls, backtest_cfg: Mapping[str, Any], policy_cfg: Mapping[str, Any], window_days: int) -> Settings:
        """From the loaded configs/backtest.yaml and configs/policy.yaml."""
        try:
            leak = backtest_cfg.get("leakage") or {}
            cut = policy_cfg["cutoffs"]
            cutoffs = {
                float(cut["approve_below"]),
                float(cut["decline_from"]),
                *(float(b["max_score"]) for b in policy_cfg.get("bands", []) if float(b["max_score"]) < 1.0),
            }
            return cls(
                window_days,
                float(backtest_cfg["lgd"]),
                tuple(sorted(cutoffs)),
                float(cut["approve_below"]),
                int(leak.get("replay_orders", 20)),
                float(leak.get("max_feature_auc", 0.95)),
                float(leak.get("oracle_margin", 0.02)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise bt.BacktestError(
                f"configs/backtest.yaml or configs/policy.yaml: missing or malformed entry {exc}"
            ) from None


@dataclass(frozen=True)
class Result:
    summary: dict[str, Any]  # everything, JSON-ready
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)  # for CSV artifacts


def run(
    facts: pl.DataFrame,
    models: Mapping[str, Scorer],
    start: datetime,
    end: datetime,
    settings: Settings,
    train_window: tuple[datetime, datetime] | None = None,
    truth: pl.DataFrame | None = None,
    featurize: Featurize = order_features,
) -> Result:
    """Backtest `models` (role -> scorer; "champion" first, optionally "challenger") on the
    orders decided in [start, end). PSI compares with the orders of `train_window`
    (default: every order before `start`)."""
    if start >= end:
        raise bt.BacktestError(f"--from {start.isoformat()} is not before --to {end.isoformat()}")
    data_end = facts["occurred_at"].max()
    rows = featurize(facts)
    labelled = rows.join(outcomes(facts, settings.outcome_window_days), on="order_id", how="left")
    window = labelled.filter((pl.col("decision_time") >= start) & (pl.col("decision_time") < end))
    scored = window.filter(pl.col("matures_at") <= data_end)
    if scored.is_empty():
        raise bt.BacktestError(
            f"no order on terms decided between {start.isoformat()} and {end.isoformat()} has a matured outcome "
            f"(events end {data_end.isoformat()}; an outcome is known "
            f"{settings.outcome_window_days} days after the due "
            "date): choose an earlier window or a longer archive"
        )
    t_from, t_to = train_window or (labelled["decision_time"].min(), start)
    training = labelled.filter((pl.col("decision_time") >= t_from) & (pl.col("decision_time") < t_to))
    y = scored["defaulted"].cast(pl.Int64).to_numpy()
    summary: dict[str, Any] = {
        "window": {"from": start.isoformat(), "to": end.isoformat(), "events_end": data_end.isoformat()},
        "orders": {
            "in_window": window.height,
            "matured": scored.height,
            "defaults": int(y.sum()),
            "not_matured_excluded": window.height - scored.height,
        },
        "training_window": {"from": t_from.isoformat(), "to": t_to.isoformat(), "orders": training.height},
        "settings": {
            "lgd": settings.lgd,
            "cutoffs": list(settings.cutoffs),
            "approve_below": settings.approve_below,
            "psi_bins": bt.PSI_BINS,
            "psi_epsilon": bt.PSI_EPSILON,
        },
        "models": {},
    }
    tables: dict[str, pl.DataFrame] = {}
    oracle = _oracle(scored, truth)
    for role, scorer in models.items():
        _check_features(scorer, rows)
        score = scorer.predict(frame(scored, scorer.features).to_numpy())
        metrics = bt.ranking(y, score)
        calib, cuts = bt.calibration(y, score), bt.cutoff_table(y, score, settings.cutoffs)
        losses = bt.expected_loss(
            scored.select("amount_minor", "currency", "defaulted").with_columns(score=score), settings.lgd
        )
        psi = _psi(scorer, training, scored, score)
        summary["models"][role] = {
            "name": scorer.ref.name,
            "version": scorer.ref.version,
            **metrics,
            "oracle_auc": oracle,
            "calibration": calib.to_dicts(),
            "cutoffs": cuts.to_dicts(),
            "expected_loss": losses.to_dicts(),
            "psi": psi,
        }
        tables |= {
            f"{role}_calibration": calib,
            f"{role}_cutoffs": cuts,
            f"{role}_expected_loss": losses,
            f"{role}_psi": pl.DataFrame(
                {"variable": ["score", *psi["features"]], "psi": [psi["score"], *psi["features"].values()]},
                schema={"variable": pl.String, "psi": pl.Float64},
            ),
        }
    vint = bt.vintages(window.select("decision_time", "default_at"), data_end)
    summary["vintages"] = vint.to_dicts()
    tables["vintages"] = vint
    summary["leakage_checks"] = leakage_checks(facts, scored, rows, models, summary["models"], settings, featurize)
    if "challenger" in models:
        verdict, sentence = bt.compare(
            summary["models"]["champion"], summary["models"]["challenger"], settings.approve_below
        )
        summary["recommendation"] = {"verdict": verdict, "text": sentence}
    return Result(summary, tables)


def _check_features(scorer: Scorer, rows: pl.DataFrame) -> None:
    missing = [f for f in scorer.features if f not in rows.columns]
    if missing:
        raise bt.BacktestError(
            f"{scorer.ref.name} v{scorer.ref.version} reads features the batch runtime does not "
            f"compute: {', '.join(missing)}"
        )


def _oracle(scored: pl.DataFrame, truth: pl.DataFrame | None) -> float | None:
    if truth is None:
        return None
    joined = scored.select("order_id", "defaulted").join(truth.select("order_id", "p_default"), on="order_id")
    if joined.height != scored.height or joined["defaulted"].n_unique() < 2:
        return None
    return float(roc_auc_score(joined["defaulted"].to_numpy(), joined["p_default"].to_numpy()))


def _psi(scorer: Scorer, training: pl.DataFrame, scored: pl.DataFrame, score: np.ndarray) -> dict[str, Any]:
    if training.is_empty():
        return {"score": None, "features": {}, "note": "no orders in the training window"}
    train_score = scorer.predict(frame(training, scorer.features).to_numpy())
    return {
        "score": bt.psi(train_score, score),
        "features": {
            f: bt.psi(training[f].cast(pl.Float64).to_list(), scored[f].cast(pl.Float64).to_list())
            for f in scorer.features
        },
    }


# --------------------------------------------------------------------------- leakage


def leakage_checks(
    facts: pl.DataFrame,
    scored: pl.DataFrame,
    rows: pl.DataFrame,
    models: Mapping[str, Scorer],
    metrics: Mapping[str, dict],
    settings: Settings,
    featurize: Featurize,
) -> dict[str, Any]:
    """The checks of the module doc; `passed` only when none fired."""
    features = sorted({f for s in models.values() for f in s.features})
    checks = [
        _replay(facts, scored, rows, features, settings.replay_orders, featurize),
        _feature_auc(scored, features, settings.max_feature_auc),
        _oracle_check(metrics, settings.oracle_margin),
        _feature_time(scored),
    ]
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def _replay(
    facts: pl.DataFrame, scored: pl.DataFrame, rows: pl.DataFrame, features: list[str], n: int, featurize: Featurize
) -> dict[str, Any]:
    picks = scored.sort("decision_time", "order_id")
    picks = picks[np.unique(np.linspace(0, picks.height - 1, min(n, picks.height)).round().astype(int)).tolist()]
    seen: dict[str, list[str]] = {}
    for order_id, at in picks.select("order_id", "decision_time").iter_rows():
        then = featurize(facts.filter(pl.col("occurred_at") <= at)).filter(pl.col("order_id") == order_id)
        now = rows.filter(pl.col("order_id") == order_id)
        for f in features:
            a, b = then[f].cast(pl.Float64).to_list(), now[f].cast(pl.Float64).to_list()
            if a != b and not _close(a, b):
                seen.setdefault(f, []).append(order_id)
    return {
        "name": "replay",
        "passed": not seen,
        "orders_replayed": picks.height,
        "features_that_saw_the_future": {f: {"orders": len(ids), "first": ids[0]} for f, ids in sorted(seen.items())},
        "detail": (
            "every sampled order's features are the same from the events up to its decision time"
            if not seen
            else f"{len(seen)} feature(s) differ when recomputed from the events known at "
            f"decision time: {', '.join(sorted(seen))}"
        ),
    }


def _close(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    return all(
        (x is None and y is None) or (x is not None and y is not None and np.isclose(x, y, rtol=1e-9, atol=0))
        for x, y in zip(a, b)
    )


def _feature_auc(scored: pl.DataFrame, features: list[str], limit: float) -> dict[str, Any]:
    y = scored["defaulted"].cast(pl.Int64).to_numpy()
    flagged = {}
    for f in features:
        values = scored[f].cast(pl.Float64).fill_nan(None)
        known = values.is_not_null().to_numpy()
        if known.sum() < 2 or len(set(y[known])) < 2:
            continue
        auc = float(roc_auc_score(y[known], values.to_numpy()[known]))
        if max(auc, 1 - auc) >= limit:
            flagged[f] = round(max(auc, 1 - auc), 4)
    return {
        "name": "feature_auc",
        "passed": not flagged,
        "limit": limit,
        "too_good": flagged,
        "detail": (
            f"no single feature ranks the outcomes with AUC ≥ {limit}"
            if not flagged
            else f"too good to be true: {', '.join(f'{k} (AUC {v})' for k, v in flagged.items())}"
        ),
    }


def _oracle_check(metrics: Mapping[str, dict], margin: float) -> dict[str, Any]:
    above = {
        role: round(m["auc"], 4)
        for role, m in metrics.items()
        if m.get("oracle_auc") is not None and m["auc"] > m["oracle_auc"] + margin
    }
    oracle = next((m["oracle_auc"] for m in metrics.values() if m.get("oracle_auc") is not None), None)
    if oracle is None:
        return {
            "name": "oracle",
            "passed": True,
            "checked": False,
            "detail": "no true probabilities (not a generated world)",
        }
    return {
        "name": "oracle",
        "passed": not above,
        "checked": True,
        "oracle_auc": round(oracle, 4),
        "above": above,
        "detail": (
            f"no model beats the oracle AUC {oracle:.4f} by more than {margin}"
            if not above
            else f"AUC above the oracle {oracle:.4f}: " + ", ".join(f"{r} {a}" for r, a in above.items())
        ),
    }


def _feature_time(scored: pl.DataFrame) -> dict[str, Any]:
    if AVAILABLE not in scored.columns:
        return {
            "name": "feature_time",
            "passed": True,
            "checked": False,
            "detail": "features computed from the events, not read from stored feature rows",
        }
    late = scored.filter(pl.col(AVAILABLE) > pl.col("decision_time"))
    return {
        "name": "feature_time",
        "passed": late.is_empty(),
        "checked": True,
        "rows_known_after_decision": late.height,
        "detail": (
            "every feature row was known by its decision time"
            if late.is_empty()
            else f"{late.height} order(s) got a feature row known only after the decision, first "
            f"{late['order_id'][0]} (decided {late['decision_time'][0].isoformat()}, row known "
            f"{late[AVAILABLE][0].isoformat()})"
        ),
    }
