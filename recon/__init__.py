"""Reconciliation: settlement reports and bank statements in (intake), the ledger's
expectations matched against them three ways (matching), variances kept and worked
(variances), and the variance report (report). docs/intake.md, docs/recon.md.

    intake      detect, parse, validate (Great Expectations), store, publish, quarantine
    lines       the settlement and bank line schemas every step shares
    matching    the pure matching rules, the batch `reconcile` and the continuous matcher
    arrivals    what the reconciliation flow takes from its two topics
    streaming   the flow's one piece of state around the continuous matcher
    variances   the variance store and the resolutions queued for a running flow
    report      the variance report for finance; score: precision and recall on a truth
    autofix     automatic fixes: configured rules that clear known patterns with a reason

The names below are the public surface: the shell, notebooks and benchmarks import only
these (clearline.surface explains why they load lazily).
"""

from clearline.surface import surface

__getattr__, __all__ = surface(
    __name__,
    {
        "from_events": "arrivals",
        "ADJUSTMENT_ACCOUNTS": "adjustments",
        "AdjustmentLeg": "adjustments",
        "AdjustmentProposal": "adjustments",
        "check_adjustment": "adjustments",
        "propose_adjustment": "adjustments",
        "from_settlements": "arrivals",
        "ADYEN_LAYOUT": "intake.adyen:LAYOUT",
        "CHECKOUTCOM_LAYOUT": "intake.checkoutcom:LAYOUT",
        "STRIPE_LAYOUT": "intake.stripe:LAYOUT",
        "Intake": "intake.ingest",
        "IntakeSettings": "intake.ingest",
        "ParseError": "intake.model",
        "parse_file": "intake.parse",
        "quarantined_files": "intake.registry",
        "read_lines": "intake.store",
        "read_statements": "intake.store",
        "watch": "intake.watch",
        "BANK_SCHEMA": "lines",
        "STATEMENT_SCHEMA": "lines",
        "Statement": "lines",
        "SETTLEMENT_SCHEMA": "lines",
        "expectations": "matching.expectations:",
        "adjusted": "matching.adjusted:",
        "bank_books": "matching.continuity",
        "match_settlements": "matching.settlements:match",
        "facts_hash": "matching.continuous",
        "Continuous": "matching.continuous",
        "Retirement": "matching.continuous",
        "Inputs": "matching.reconcile",
        "input_watermark": "matching.reconcile",
        "reconcile": "matching.reconcile",
        "within": "matching.reconcile",
        "MatchingConfigError": "matching.rules",
        "Tolerances": "matching.rules",
        "VARIANCE_SCHEMA": "matching.variance:SCHEMA",
        "VARIANCE_CATEGORIES": "matching.variance:CATEGORIES",
        "Variance": "matching.variance",
        "variance_id": "matching.variance",
        "money_text": "matching.variance",
        "open_variances": "report.render",
        "write_report": "report.render:write",
        "ReportRules": "report.summary",
        "classify_variances": "report.summary:classify",
        "variance_totals": "report.summary:totals",
        "build_report": "report.summary:build",
        "misses": "score",
        "autofix": "autofix:",
        "AutofixRules": "autofix",
        "AutofixConfigError": "autofix",
        "score_variances": "score:score",
        "Publication": "streaming",
        "builder": "streaming",
        "apply_resolutions": "variances.resolutions:apply",
        "queue_resolution": "variances.resolutions:queue",
        "pending_resolutions": "variances.resolutions:pending",
        "publish_variances": "variances.store:publish",
        "PUBLISHED_VARIANCES": "variances.store:PUBLISHED",
        "PUBLISHED_VARIANCE_HISTORY": "variances.store:PUBLISHED_HISTORY",
        "PUBLISHED_VARIANCE_SCHEMA": "variances.store:PUBLISHED_SCHEMA",
        "VarianceStore": "variances.store",
        "check_request": "variances.store",
        "read_variances": "variances.store",
    },
)
