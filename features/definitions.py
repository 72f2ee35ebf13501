"""The risk features, defined once: their names, windows, and the pure functions that
update an entity's state with one event and read its features as of a moment.

The streaming runtime calls these functions event by event; the batch runtime computes
the same values vectorised over a whole archive, and the parity test proves both agree
on every order. The rules both follow:

* Event time. A value "as of" `at` is computed from the entity's events with
  `occurred_at` strictly before `at`; events at exactly `at` (the order itself, or
  anything simultaneous) are not seen. So the model never sees the order it scores, nor
  anything later (no leakage). A window of w is `[at - w, at)`.
* Money is integer minor units. An amount feature sums only amounts in the currency of
  the order being scored (the "reading currency"); other currencies are left out, not
  converted, because there is no rate in the contract to convert with honestly. Counts
  and rates count every currency. (In the generated world each buyer and merchant trades
  in one currency, so nothing is left out there.)
* Rates are floats (they are not money): a count divided by a count, null when the
  denominator is zero. The merchant's ticket z-score is computed from exact integer sums
  with one fixed formula (`ticket_zscore`), so both runtimes round identically.
* Refunds and chargebacks name a payment, not a buyer: they count for the buyer whose
  `payment.authorized` named that payment (the runtimes attribute them before calling
  these functions).
* The contract has no decline event: the merchant's "decline rate" is the share of its
  authorizations released by a void instead of being captured.
* Exposure is what was financed (terms orders) minus what was repaid. A written-off
  order stays in exposure: a write-off is a loss, not a repayment.
* Days past due: over the buyer's terms orders that are still open (not fully repaid, not
  written off), the largest number of whole days from the due date to `at`'s UTC date;
  0 when none is overdue.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import operator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping

from clearline.events import Event
from clearline.features.records import record, replaced

# --------------------------------------------------------------------------- the spec


class FeatureConfigError(ValueError):
    """configs/features.yaml does not say what it must; the message names the key."""


@dataclass(frozen=True, slots=True)
class Spec:
    """Windows (label, seconds), ascending, for the buyer's order counts and amounts; the
    merchant's window; and how late an event may arrive and still count in event time."""

    windows: tuple[tuple[str, int], ...]
    merchant_window: tuple[str, int]
    allowed_lateness_s: int

    @property
    def retention_s(self) -> int:
        """How far back state must remember individual orders to answer every window."""
        return max(self.windows[-1][1], self.merchant_window[1])


DEFAULT_SPEC = Spec(
    windows=(("1h", 3600), ("24h", 86400), ("7d", 604800), ("30d", 2592000)),
    merchant_window=("30d", 2592000),
    allowed_lateness_s=3600,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(label: Any, where: str) -> int:
    text = str(label)
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise FeatureConfigError(f"{where}: {text!r} is not a duration like 90s, 15m, 1h or 7d")
    return int(text[:-1]) * _UNITS[text[-1]]


def spec_from_config(cfg: Mapping[str, Any]) -> Spec:
    """The Spec a loaded `configs/features.yaml` describes (windows as labels like "24h")."""
    try:
        labels, merchant, lateness = cfg["windows"], cfg["merchant_window"], cfg["allowed_lateness"]
    except KeyError as exc:
        raise FeatureConfigError(f"configs/features.yaml: missing key {exc.args[0]!r}") from None
    if not isinstance(labels, list) or not labels:
        raise FeatureConfigError("configs/features.yaml: windows must be a non-empty list like [1h, 24h]")
    windows = tuple((str(w), _seconds(w, "windows")) for w in labels)
    if [s for _, s in windows] != sorted({s for _, s in windows}):
        raise FeatureConfigError(f"configs/features.yaml: windows must be distinct and ascending, got {labels}")
    return Spec(windows, (str(merchant), _seconds(merchant, "merchant_window")), _seconds(lateness, "allowed_lateness"))


# --------------------------------------------------------------------------- names


def buyer_feature_names(spec: Spec = DEFAULT_SPEC) -> tuple[str, ...]:
    return (
        *(f"buyer_orders_{w}" for w, _ in spec.windows),
        *(f"buyer_amount_{w}" for w, _ in spec.windows),
        "buyer_exposure_minor",
        "buyer_days_past_due",
        "buyer_late_repayment_rate",
        "buyer_refund_rate",
        "buyer_chargeback_rate",
        "buyer_distinct_merchants",
        "buyer_defaults",
    )


def merchant_feature_names(spec: Spec = DEFAULT_SPEC) -> tuple[str, ...]:
    w = spec.merchant_window[0]
    return (
        f"merchant_orders_{w}",
        f"merchant_volume_{w}",
        f"merchant_avg_ticket_{w}",
        "merchant_ticket_zscore",
        "merchant_decline_rate",
        "merchant_refund_rate",
        "merchant_chargeback_rate",
    )


def merchant_ticket_names(spec: Spec = DEFAULT_SPEC) -> tuple[str, str]:
    """The merchant's ticket count and sum of squared tickets in the reading currency over
    its window. Not model inputs: with the volume (the sum of those tickets) they are what
    `ticket_zscore` needs, so whoever holds a merchant's row — the decision API — can score
    the z-score of an amount the row was not read for, exactly as the stream would."""
    w = spec.merchant_window[0]
    return f"merchant_tickets_{w}", f"merchant_ticket_sumsq_{w}"


def merchant_row_names(spec: Spec = DEFAULT_SPEC) -> tuple[str, ...]:
    """What `read_merchant` gives and the feature store keeps per merchant: the features
    and the ticket aggregates behind the z-score."""
    return (*merchant_feature_names(spec), *merchant_ticket_names(spec))


def float_features(spec: Spec = DEFAULT_SPEC) -> frozenset[str]:
    """The features that are Float64 (rates and the z-score); every other one is an integer."""
    return frozenset(
        n
        for n in (*buyer_feature_names(spec), *merchant_feature_names(spec))
        if n.endswith("_rate") or n.endswith("_zscore")
    )


def wide_integers(spec: Spec = DEFAULT_SPEC) -> frozenset[str]:
    """Integers that can pass 64 bits: the sum of squared tickets (one 10^10-minor ticket,
    100 million rupiah, squares to 10^20 > 2^63). Kept exact, never as floats:
    the z-score's rounding must not depend on who computed it."""
    return frozenset(merchant_ticket_names(spec)[1:])


# --------------------------------------------------------------------------- facts


@record
class Fact:
    """One event flattened to what the features read. `buyer_id` is set for refunds and
    chargebacks once attributed through their payment's authorization."""

    event_id: str
    event_type: str
    occurred_at: datetime
    merchant_id: str
    buyer_id: str | None = None
    order_id: str | None = None
    payment_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    payment_method: str | None = None
    terms_days: int | None = None
    due_date: date | None = None
    days_late: int | None = None


FACT_FIELDS = tuple(f.name for f in dataclasses.fields(Fact))
BUYER_EVENTS = frozenset(
    {"order.created", "payment.authorized", "payment.refunded", "chargeback.opened", "buyer.repayment", "buyer.default"}
)
MERCHANT_EVENTS = frozenset(
    {"order.created", "payment.authorized", "payment.voided", "payment.refunded", "chargeback.opened"}
)
FEATURE_EVENTS = BUYER_EVENTS | MERCHANT_EVENTS  # the rest (captures, settlements, fees, …) change no feature
NEEDS_ATTRIBUTION = frozenset({"payment.refunded", "chargeback.opened"})  # carry a payment, not a buyer


_PAYLOAD_FIELDS = (
    "buyer_id",
    "order_id",
    "payment_id",
    "amount",
    "payment_method",
    "terms_days",
    "due_date",
    "days_late",
)


@functools.cache
def _payload_fields(kind: type) -> Callable[[Any], tuple]:
    """A function giving a payload of class `kind` its values of `_PAYLOAD_FIELDS`, None
    for a field the class has not. Known once per class: `getattr(p, name, None)` for a
    field the payload lacks raises and catches an AttributeError, three or four times an
    event, which was most of what flattening an event cost."""
    values = ", ".join(f"p.{n}" if hasattr(kind, n) else "None" for n in _PAYLOAD_FIELDS)
    return eval(f"lambda p: ({values},)")  # noqa: S307  (names from _PAYLOAD_FIELDS, none from outside)


def fact_of(event: Event, buyer_id: str | None = None) -> Fact:
    """Flatten a decoded contract event (payload fields by name; absent ones stay None)."""
    p = event.payload
    buyer, order, payment, amount, method, terms, due, late = _payload_fields(type(p))(p)
    return Fact(
        event.event_id,
        event.event_type,
        event.occurred_at,
        event.merchant_id,
        buyer_id or buyer,
        order,
        payment,
        amount.minor if amount else None,
        amount.currency if amount else None,
        method,
        terms,
        due,
        late,
    )


def is_underwriting_request(f: Fact) -> bool:
    """An order on terms: the request the risk flow scores, one feature row each."""
    return f.event_type == "order.created" and f.payment_method == "terms"


# what identifies an underwriting request in a feature row, before the features
ORDER_COLUMNS = (
    "order_id",
    "buyer_id",
    "merchant_id",
    "event_id",
    "decision_time",
    "amount_minor",
    "currency",
    "terms_days",
)


def request_columns(f: Fact) -> dict[str, Any]:
    return {
        "order_id": f.order_id,
        "buyer_id": f.buyer_id,
        "merchant_id": f.merchant_id,
        "event_id": f.event_id,
        "decision_time": f.occurred_at,
        "amount_minor": f.amount_minor,
        "currency": f.currency,
        "terms_days": f.terms_days,
    }


@record
class Attribution:
    """What is known about one payment: the buyer its authorization named (None until
    seen), and its refunds and chargebacks that came before the authorization did."""

    buyer_id: str | None = None
    waiting: tuple[Fact, ...] = ()


def attribute_payment(known: Attribution | None, f: Fact) -> tuple[Attribution, list[Fact]]:
    """Pass an authorization through and remember its buyer; give refunds and chargebacks
    that buyer, holding them until the authorization arrives if it has not yet."""
    known = known or Attribution()
    if f.event_type == "payment.authorized":
        return Attribution(f.buyer_id), [f, *(replaced(w, buyer_id=f.buyer_id) for w in known.waiting)]
    if known.buyer_id is None:
        return replaced(known, waiting=(*known.waiting, f)), []
    return known, [replaced(f, buyer_id=known.buyer_id)]


# --------------------------------------------------------------------------- buyer


def _add(pairs: tuple[tuple[str, int], ...], key: str, amount: int) -> tuple[tuple[str, int], ...]:
    """A small per-currency counter kept as sorted pairs, so state stays hashable and plain."""
    d = dict(pairs)
    d[key] = d.get(key, 0) + amount
    return tuple(sorted(d.items()))


@record
class OpenOrder:
    order_id: str
    created_at: datetime
    due_date: date
    outstanding_minor: int


@record
class BuyerState:
    orders: tuple[tuple[datetime, int, str], ...] = ()  # (occurred_at, minor, currency) within retention, in time order
    financed: tuple[tuple[str, int], ...] = ()  # per currency, lifetime
    repaid: tuple[tuple[str, int], ...] = ()
    open_orders: tuple[OpenOrder, ...] = ()
    repayments: int = 0
    late_repayments: int = 0
    payments: int = 0
    refunds: int = 0
    chargebacks: int = 0
    defaults: int = 0
    merchants: frozenset[str] = frozenset()


_at = operator.itemgetter(0)


def _with_order(orders: tuple, f: Fact, spec: Spec) -> tuple:
    """The recent orders with this one added in event-time order (a late one where it
    belongs), forgetting those no window can reach. Kept in order so that a window is
    two bisections and a slice, not a scan of every order in the retention."""
    new = (f.occurred_at, f.amount_minor, f.currency)
    if orders and new[0] < orders[-1][0]:
        at = bisect.bisect_right(orders, new[0], key=_at)
        orders = (*orders[:at], new, *orders[at:])
    else:
        orders = (*orders, new)
    return orders[bisect.bisect_left(orders, f.occurred_at - timedelta(seconds=spec.retention_s), key=_at) :]


def _within(orders: tuple, since: datetime, until: datetime) -> tuple:
    """The orders with since <= time < until (orders are in event-time order)."""
    return orders[bisect.bisect_left(orders, since, key=_at) : bisect.bisect_left(orders, until, key=_at)]


# events that only bump a counter, by the state field they bump (where the state has it)
_COUNTERS = {
    "payment.authorized": "payments",
    "payment.voided": "voids",
    "payment.refunded": "refunds",
    "chargeback.opened": "chargebacks",
}


def _counted(s: Any, event_type: str) -> Any:
    field = _COUNTERS.get(event_type)
    if field is None or not hasattr(s, field):
        return s
    return replaced(s, **{field: getattr(s, field) + 1})


def apply_buyer(s: BuyerState, f: Fact, spec: Spec = DEFAULT_SPEC) -> BuyerState:
    """The buyer's state after one event (events must come in event-time order, except
    late ones, which are applied for the future but were missed by reads in their past)."""
    t = f.event_type
    if t == "order.created":
        s = replaced(s, orders=_with_order(s.orders, f, spec), merchants=s.merchants | {f.merchant_id})
        if f.payment_method == "terms":
            due = f.due_date or (f.occurred_at + timedelta(days=f.terms_days or 0)).date()
            s = replaced(
                s,
                financed=_add(s.financed, f.currency, f.amount_minor),
                open_orders=(*s.open_orders, OpenOrder(f.order_id, f.occurred_at, due, f.amount_minor)),
            )
        return s
    if t == "buyer.repayment":
        still_open = tuple(
            o if o.order_id != f.order_id else replaced(o, outstanding_minor=o.outstanding_minor - f.amount_minor)
            for o in s.open_orders
        )
        return replaced(
            s,
            repaid=_add(s.repaid, f.currency, f.amount_minor),
            open_orders=tuple(o for o in still_open if o.outstanding_minor > 0),
            repayments=s.repayments + 1,
            late_repayments=s.late_repayments + (f.days_late > 0),
        )
    if t == "buyer.default":
        return replaced(
            s, defaults=s.defaults + 1, open_orders=tuple(o for o in s.open_orders if o.order_id != f.order_id)
        )
    return _counted(s, t)


def rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def days_past_due(due: date, at: datetime) -> int:
    return max(0, (at.date() - due).days)


def read_buyer(s: BuyerState, at: datetime, currency: str, spec: Spec = DEFAULT_SPEC) -> dict[str, Any]:
    """The buyer's features as of `at` (state must hold only events before `at`)."""
    inside = {label: _within(s.orders, at - timedelta(seconds=secs), at) for label, secs in spec.windows}
    out: dict[str, Any] = {f"buyer_orders_{label}": len(rows) for label, rows in inside.items()}
    out.update({f"buyer_amount_{label}": sum(m for _, m, c in rows if c == currency) for label, rows in inside.items()})
    out["buyer_exposure_minor"] = dict(s.financed).get(currency, 0) - dict(s.repaid).get(currency, 0)
    out["buyer_days_past_due"] = max(
        (days_past_due(o.due_date, at) for o in s.open_orders if o.created_at < at), default=0
    )
    out["buyer_late_repayment_rate"] = rate(s.late_repayments, s.repayments)
    out["buyer_refund_rate"] = rate(s.refunds, s.payments)
    out["buyer_chargeback_rate"] = rate(s.chargebacks, s.payments)
    out["buyer_distinct_merchants"] = len(s.merchants)
    out["buyer_defaults"] = s.defaults
    return out


# --------------------------------------------------------------------------- merchant


@record
class MerchantState:
    orders: tuple[tuple[datetime, int, str], ...] = ()  # within retention, in time order
    payments: int = 0
    voids: int = 0
    refunds: int = 0
    chargebacks: int = 0


def apply_merchant(s: MerchantState, f: Fact, spec: Spec = DEFAULT_SPEC) -> MerchantState:
    if f.event_type == "order.created":
        return replaced(s, orders=_with_order(s.orders, f, spec))
    return _counted(s, f.event_type)


def ticket_zscore(amount: int, n: int, total: int, squares: int) -> float | None:
    """(amount - mean) / sample std of n tickets with sum `total` and sum of squares
    `squares`, from exact integers: (n·x − S) / sqrt(n·(n·Q − S²) / (n − 1)). Null with
    fewer than two tickets or no spread. One formula, so both runtimes round alike."""
    if n < 2:
        return None
    spread = n * squares - total * total
    if spread <= 0:
        return None
    return float(n * amount - total) / math.sqrt(float(n * spread) / float(n - 1))


def zscore_for(row: Mapping[str, Any], amount: int, spec: Spec = DEFAULT_SPEC) -> float | None:
    """The z-score `read_merchant` gives `amount` from the state a merchant row was read
    from (same instant, same currency), using only the row: its ticket count, volume and
    sum of squares. For a reader that holds the row, not the state (the decision API)."""
    tickets, sumsq = merchant_ticket_names(spec)
    return ticket_zscore(amount, row[tickets], row[f"merchant_volume_{spec.merchant_window[0]}"], row[sumsq])


def read_merchant(
    s: MerchantState, at: datetime, currency: str, amount: int, spec: Spec = DEFAULT_SPEC
) -> dict[str, Any]:
    """The merchant's features as of `at`, the z-score of this order's amount, and the
    ticket aggregates (`merchant_ticket_names`) that z-score came from."""
    label, secs = spec.merchant_window
    since = at - timedelta(seconds=secs)
    inside = _within(s.orders, since, at)
    same = [m for _, m, c in inside if c == currency]
    n, total, squares = len(same), sum(same), sum(m * m for m in same)
    tickets, sumsq = merchant_ticket_names(spec)
    return {
        f"merchant_orders_{label}": len(inside),
        f"merchant_volume_{label}": total,
        f"merchant_avg_ticket_{label}": total // n if n else None,
        "merchant_ticket_zscore": ticket_zscore(amount, n, total, squares),
        "merchant_decline_rate": rate(s.voids, s.payments),
        "merchant_refund_rate": rate(s.refunds, s.payments),
        "merchant_chargeback_rate": rate(s.chargebacks, s.payments),
        tickets: n,
        sumsq: squares,
    }
