"""Underwriting models: labels, point-in-time training sets, scikit-learn pipelines in
MLflow, the decision policy and its reason codes, fast scoring, backtests and the
decision API (docs/models.md, docs/api.md, docs/backtest.md).

    decision          decide / decide_many: policy, champion score, challenger shadow
    request_inputs    what a streamed request hands `decide` (the store's view of it)
    policy, reasons   the rules around the score and the reason codes they give
    scorer, fast_scoring  a registered model's score, and the same numbers without sklearn
    registry          MLflow: log, register, champion/challenger aliases, load
    labels, training_set, pit, train   outcomes, point-in-time training sets, fitting
    backtest, backtest_run, backtest_report, backtest_charts   the backtest and its report
    api, api_core, api_store   the decision API, its request path and its decision store
    decision_journal  the risk flow's durable record of what it decided

The names below are the public surface: the shell, notebooks and benchmarks import only
these (clearline.surface explains why they load lazily).
"""

from clearline.surface import surface

__getattr__, __all__ = surface(
    __name__,
    {
        "labels": "labels:",
        "pit": "pit:",
        "training_set": "training_set:",
        "DecisionRequest": "api",
        "DecisionService": "api",
        "create_app": "api",
        "ApiKeys": "api_core",
        "ApiSetupError": "api_core",
        "MerchantDirectory": "api_core",
        "OnlineFeatures": "api_core",
        "DecisionStore": "api_store",
        "SharedWriter": "api_store",
        "write_backtest_report": "backtest_report:write",
        "BacktestSettings": "backtest_run:Settings",
        "run_backtest": "backtest_run:run",
        "Decision": "decision",
        "UnderwritingRequest": "decision",
        "decide": "decision",
        "decide_many": "decision",
        "Entry": "decision_journal",
        "Journal": "decision_journal",
        "read_log": "decision_journal",
        "ArrayScorer": "fast_scoring",
        "FEATURES_UNAVAILABLE": "policy",
        "Policy": "policy",
        "Registry": "registry",
        "RegistryError": "registry",
        "RegistrySettings": "registry",
        "request_features": "request_inputs",
        "Scorer": "scorer",
        "fit_all": "train",
    },
)
