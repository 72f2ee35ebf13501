"""The variance queue on the server: what a person's filters, sort and page mean in SQL.

`build` is a pure function from a `Filters` (what the queue page's form and the API's query
string say) and the person's tenant to SQL text and parameters, so what it selects is tested
without a server; `run` executes it with DuckDB over the published variances (a view named
`variances`) and the merchant owners (a table `owners(merchant_id, reseller_id)`), so the
page reads only the rows it shows whatever the queue's size: counts and amounts at stake
are one aggregate over the same WHERE clause, and the page is LIMIT/OFFSET on an ORDER BY
that ends with the variance id (a total order: no row appears on two pages).

SLA tiers are the variance report's (configs/reports.yaml, `ReportRules`): the first tier
whose age and amount a variance reaches, written here as a SQL CASE.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from clearline.currency import EXPONENT

STATUSES = ("unresolved", "open", "assigned", "watched", "resolved", "all")
SORTS = {
    "since": "since",
    "age": "age_days",
    "amount": "abs(amount_minor)",
    "category": "category",
    "processor": "processor",
    "merchant": "merchant_id",
    "currency": "currency",
    "status": "status",
    "assignee": "assignee",
    "tier": "tier_rank",
}
COLUMNS = (
    "variance_id, category, processor, merchant_id, reference, payout_id, amount_minor, currency, field, expected,"
    " actual, since, age_days, status, assignee, note, code, watch_until, first_seen, sla_tier"
)


class BadFilter(ValueError):
    """A filter the queue cannot apply (unknown sort, status or tier); the message says which."""


@dataclass(frozen=True)
class Filters:
    tier: str | None = None
    category: str | None = None
    processor: str | None = None
    merchant: str | None = None
    currency: str | None = None
    min_age: int | None = None
    max_age: int | None = None
    assignee: str | None = None
    status: str = "unresolved"
    sort: str = "age"
    desc: bool = True
    page: int = 1
    page_size: int = 50
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_query(cls, query: dict[str, str], page_size: int, max_page_size: int) -> Filters:
        """From a query string (empty values mean no filter); refuses what it cannot read."""

        def text(key: str) -> str | None:
            value = (query.get(key) or "").strip()
            return value or None

        def number(key: str, low: int = 0) -> int | None:
            value = text(key)
            if value is None:
                return None
            if not value.isdigit() or int(value) < low:
                raise BadFilter(f"{key}: {value!r} is not a whole number of at least {low}")
            return int(value)

        size = number("page_size", 1) or page_size
        return cls(
            tier=text("tier"),
            category=text("category"),
            processor=text("processor"),
            merchant=text("merchant"),
            currency=text("currency"),
            min_age=number("min_age"),
            max_age=number("max_age"),
            assignee=text("assignee"),
            status=text("status") or "unresolved",
            sort=text("sort") or "age",
            desc=(text("dir") or "desc") != "asc",
            page=number("page", 1) or 1,
            page_size=min(size, max_page_size),
        )

    def query(self, **changes: Any) -> dict[str, str]:
        """This filter as a query string's fields (for links to other pages and sorts)."""
        f = replace(self, **changes)
        out = {
            "tier": f.tier,
            "category": f.category,
            "processor": f.processor,
            "merchant": f.merchant,
            "currency": f.currency,
            "min_age": f.min_age,
            "max_age": f.max_age,
            "assignee": f.assignee,
            "status": f.status,
            "sort": f.sort,
            "dir": "desc" if f.desc else "asc",
            "page": f.page,
            "page_size": f.page_size,
        }
        return {k: str(v) for k, v in out.items() if v is not None}


def tier_sql(rules) -> tuple[str, str]:
    """(tier, rank) SQL expressions of the report's SLA rules (`ReportRules`); rank 0 is the
    most urgent tier."""
    tier, rank = f"'{rules.sla[-1].tier}'", str(len(rules.sla) - 1)
    for i, t in reversed(list(enumerate(rules.sla[:-1]))):
        per_currency = " ".join(f"WHEN '{c}' THEN {t.min_minor(c)}" for c in sorted(EXPONENT))
        least = f"CASE currency {per_currency} ELSE {t.min_minor('XXX')} END"
        reached = f"(age_days >= {t.min_age_days} AND abs(amount_minor) >= ({least}))"
        tier = f"CASE WHEN {reached} THEN '{t.tier}' ELSE {tier} END"
        rank = f"CASE WHEN {reached} THEN {i} ELSE {rank} END"
    return tier, rank


def tiers(rules) -> tuple[str, ...]:
    return tuple(t.tier for t in rules.sla)


def build(filters: Filters, tenant: str | None, rules) -> dict[str, Any]:
    """SQL for one queue page: `rows` (the page), `totals` (count and amount at stake per
    currency) with `params` for both; `tenant` None sees every variance, a reseller id only
    its merchants'."""
    if filters.status not in STATUSES:
        raise BadFilter(f"status: {filters.status!r} is not one of {', '.join(STATUSES)}")
    if filters.sort not in SORTS:
        raise BadFilter(f"sort: {filters.sort!r} is not one of {', '.join(SORTS)}")
    if filters.tier is not None and filters.tier not in tiers(rules):
        raise BadFilter(f"tier: {filters.tier!r} is not one of {', '.join(tiers(rules))}")
    where: list[str] = []
    params: list[Any] = []

    def eq(column: str, value: Any) -> None:
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)

    if tenant is not None:
        where.append("merchant_id IN (SELECT merchant_id FROM owners WHERE reseller_id = ?)")
        params.append(tenant)
    if filters.status == "unresolved":
        where.append("status <> 'resolved'")
    elif filters.status != "all":
        eq("status", filters.status)
    eq("sla_tier", filters.tier)
    eq("category", filters.category)
    eq("processor", filters.processor)
    eq("merchant_id", filters.merchant)
    eq("currency", filters.currency)
    eq("assignee", filters.assignee)
    if filters.min_age is not None:
        where.append("age_days >= ?")
        params.append(filters.min_age)
    if filters.max_age is not None:
        where.append("age_days <= ?")
        params.append(filters.max_age)
    tier, rank = tier_sql(rules)
    tiered = f"SELECT *, {tier} AS sla_tier, {rank} AS tier_rank FROM "
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    order = f" ORDER BY {SORTS[filters.sort]} {'DESC' if filters.desc else 'ASC'} NULLS LAST, variance_id"
    window = f" LIMIT {filters.page_size} OFFSET {(filters.page - 1) * filters.page_size}"
    if filters.tier is not None or filters.sort == "tier":  # every row's tier is needed
        source = f"({tiered}variances)"
        rows = f"SELECT {COLUMNS} FROM {source}{clause}{order}{window}"
    else:  # the tier of the page's rows only
        source = "variances"
        rows = f"SELECT {COLUMNS} FROM ({tiered}(SELECT * FROM variances{clause}{order}{window})){order}"
    return {
        "rows": rows,
        "totals": f"SELECT currency, count(*) AS count, sum(abs(amount_minor))::BIGINT AS amount_minor"
        f" FROM {source}{clause} GROUP BY currency ORDER BY currency",
        "params": params,
    }


@dataclass(frozen=True)
class Page:
    rows: list[dict]
    totals: list[dict]  # per currency: count, amount_minor
    count: int
    filters: Filters

    @property
    def pages(self) -> int:
        return max(1, -(-self.count // self.filters.page_size))


def run(con, filters: Filters, tenant: str | None, rules) -> Page:
    """One queue page from a DuckDB connection with `variances` and `owners`."""
    sql = build(filters, tenant, rules)
    cur = con.cursor()
    rows = cur.sql(sql["rows"], params=sql["params"]).pl().to_dicts()
    totals = cur.sql(sql["totals"], params=sql["params"]).pl().to_dicts()
    return Page(rows, totals, sum(t["count"] for t in totals), filters)
