"""The underwriting decision policy: a score (or no score) and an order amount in, one
decision out — approve, review or decline — with a credit limit and the policy's reasons.

Pure functions on frozen records, so the stream, the HTTP API and the backtests decide
alike and the rules can be property-tested: a better (lower) score never gets a worse
decision or a lower limit, the kill switch never consults the score, and every request
gets exactly one decision. An emergency freeze of the order's merchant (the finance
workbench's, `clearline.freezes`) is an input like the score: `held` turns any decision
into `freezes.outcome` (decline unless configured review) with the reason first, so a
frozen merchant is never approved whatever the score or the kill switch says, and an
unfrozen one's decision is untouched. The numbers live in `configs/policy.yaml`; `Policy.from_config`
checks them once so a wrong file is named at start-up, not at the first request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from clearline.currency import is_currency
from clearline.events import Money

Outcome = Literal["approve", "review", "decline"]
OUTCOMES: tuple[Outcome, ...] = ("decline", "review", "approve")  # worst to best

# Why the policy decided as it did (beside the model's reason codes).
SCORE_APPROVE = "score_below_approve_cutoff"
SCORE_REVIEW = "score_in_review_band"
SCORE_DECLINE = "score_at_or_above_decline_cutoff"
OVER_LIMIT = "amount_over_limit"
WITHIN_LIMIT = "amount_within_limit"
KILL_SWITCH = "kill_switch"
FEATURES_UNAVAILABLE = "features_unavailable"
NO_CHAMPION = "no_champion"
CURRENCY_NOT_IN_POLICY = "currency_not_in_policy"
FROZEN_MERCHANT = "frozen_merchant"  # the order's merchant is under an emergency freeze


class PolicyError(ValueError):
    """configs/policy.yaml does not describe a usable policy; the message says what."""


@dataclass(frozen=True, slots=True)
class Band:
    band: str
    max_score: float
    limit_minor: Mapping[str, int]  # currency -> largest amount granted, minor units


@dataclass(frozen=True, slots=True)
class Conservative:
    limit_minor: Mapping[str, int]
    over_limit: Outcome


@dataclass(frozen=True, slots=True)
class Policy:
    approve_below: float
    decline_from: float
    bands: tuple[Band, ...]  # ascending max_score; the last one is 1.0
    conservative: Conservative
    kill_switch: bool = False
    reason_codes: int = 4
    freeze_outcome: Outcome = "decline"  # what an order of a frozen merchant gets

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Policy:
        """Build and check the policy from the loaded `configs/policy.yaml`."""
        try:
            cut = cfg["cutoffs"]
            bands = tuple(
                Band(str(b["band"]), float(b["max_score"]), _limits(b["limit_minor"], f"band {b['band']}"))
                for b in cfg["bands"]
            )
            cons = cfg["conservative"]
            policy = cls(
                float(cut["approve_below"]),
                float(cut["decline_from"]),
                bands,
                Conservative(_limits(cons["limit_minor"], "conservative"), cons["over_limit"]),
                bool(cfg.get("kill_switch", False)),
                int(cfg.get("reason_codes", 4)),
                (cfg.get("freezes") or {}).get("outcome", "decline"),
            )
        except PolicyError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyError(f"policy: missing or malformed entry {exc}") from None
        policy.check()
        return policy

    def check(self) -> None:
        """The shape the monotonicity and conservatism guarantees rest on."""
        if not 0.0 < self.approve_below <= self.decline_from <= 1.0:
            raise PolicyError(
                f"policy cutoffs: need 0 < approve_below <= decline_from <= 1, got "
                f"{self.approve_below} and {self.decline_from}"
            )
        if not self.bands or self.bands[-1].max_score < 1.0:
            raise PolicyError("policy bands: the last band must have max_score 1.0 so every score has a band")
        currencies = set(self.conservative.limit_minor)
        for prev, band in zip(self.bands, self.bands[1:]):
            if band.max_score <= prev.max_score:
                raise PolicyError(
                    f"policy bands: max_score must rise, band {band.band} ({band.max_score}) "
                    f"follows {prev.band} ({prev.max_score})"
                )
            for ccy, limit in band.limit_minor.items():
                if limit > prev.limit_minor.get(ccy, limit):
                    raise PolicyError(
                        f"policy bands: {ccy} limit rises from band {prev.band} to {band.band}; "
                        "a worse score may not get a higher limit"
                    )
        for band in self.bands:
            if set(band.limit_minor) != currencies:
                raise PolicyError(
                    f"policy band {band.band}: currencies {sorted(band.limit_minor)} differ from "
                    f"the conservative rules' {sorted(currencies)}"
                )
        approving = [b for b in self.bands if b.max_score <= self.approve_below]
        for ccy, limit in self.conservative.limit_minor.items():
            if any(limit > b.limit_minor[ccy] for b in approving):
                raise PolicyError(
                    f"policy conservative: {ccy} limit {limit} exceeds an approving band's limit; "
                    "falling back may not grant more than a model would"
                )
        if self.conservative.over_limit not in ("review", "decline"):
            raise PolicyError(
                f"policy conservative.over_limit: must be review or decline, got {self.conservative.over_limit!r}"
            )
        if self.freeze_outcome not in ("review", "decline"):
            raise PolicyError(f"policy freezes.outcome: must be review or decline, got {self.freeze_outcome!r}")
        if self.reason_codes < 0:
            raise PolicyError(f"policy reason_codes: must be >= 0, got {self.reason_codes}")

    def band_of(self, score: float) -> Band:
        return next(b for b in self.bands if score <= b.max_score)


def _limits(raw: Any, where: str) -> Mapping[str, int]:
    limits = {}
    for ccy, minor in dict(raw).items():
        if not is_currency(ccy):
            raise PolicyError(f"policy {where}: {ccy!r} is not an ISO 4217 currency code")
        if not isinstance(minor, int) or isinstance(minor, bool) or minor < 0:
            raise PolicyError(
                f"policy {where}: {ccy} limit must be a non-negative integer of minor units, got {minor!r}"
            )
        limits[ccy] = minor
    return limits


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    outcome: Outcome
    credit_limit: Money
    band: str | None  # None when no score was used
    reasons: tuple[str, ...]


def by_score(policy: Policy, score: float, amount: Money) -> PolicyDecision:
    """Decide with a model's score (probability of default). Falls back to the
    conservative rules when the kill switch is on or the currency has no limits."""
    if policy.kill_switch:
        return conservative(policy, amount, KILL_SWITCH)
    if amount.currency not in policy.conservative.limit_minor:
        return PolicyDecision("decline", Money(0, amount.currency), None, (CURRENCY_NOT_IN_POLICY,))
    band = policy.band_of(score)
    if score >= policy.decline_from:
        return PolicyDecision("decline", Money(0, amount.currency), band.band, (SCORE_DECLINE,))
    limit = Money(band.limit_minor[amount.currency], amount.currency)
    within = amount.minor <= limit.minor
    if score < policy.approve_below and within:
        return PolicyDecision("approve", limit, band.band, (SCORE_APPROVE, WITHIN_LIMIT))
    reasons = (SCORE_APPROVE if score < policy.approve_below else SCORE_REVIEW, WITHIN_LIMIT if within else OVER_LIMIT)
    return PolicyDecision("review", limit, band.band, reasons)


def conservative(policy: Policy, amount: Money, why: str) -> PolicyDecision:
    """Decide without a score: small orders approved up to the conservative limit."""
    if amount.currency not in policy.conservative.limit_minor:
        return PolicyDecision("decline", Money(0, amount.currency), None, (why, CURRENCY_NOT_IN_POLICY))
    limit = Money(policy.conservative.limit_minor[amount.currency], amount.currency)
    if amount.minor <= limit.minor:
        return PolicyDecision("approve", limit, None, (why, WITHIN_LIMIT))
    return PolicyDecision(policy.conservative.over_limit, limit, None, (why, OVER_LIMIT))


def held(policy: Policy, decided: PolicyDecision, freeze: str | None) -> PolicyDecision:
    """`decided` under an emergency freeze: None leaves it as it is; a freeze reason
    (FROZEN_MERCHANT) makes it the worse of its outcome and `freeze_outcome`, the freeze's
    reason first and the others kept (what the score or the rules would have said). A
    decline grants no credit; a review keeps the limit a person would weigh."""
    if freeze is None:
        return decided
    outcome = min(decided.outcome, policy.freeze_outcome, key=OUTCOMES.index)
    limit = decided.credit_limit if outcome == "review" else Money(0, decided.credit_limit.currency)
    return PolicyDecision(outcome, limit, decided.band, (freeze, *decided.reasons))
