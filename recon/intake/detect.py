"""Which format a file is in, from its content (the name is only a hint in messages).

Processor reports are told apart by the columns their header has: a layout fits when every
column it requires is there (in any order, whatever else the header holds; see
`reading.Layout`). A CSV header no layout fits is an error naming the closest layout
(the one whose requirements it meets most), what it misses and the columns it has that
the layout does not know. Bank formats by their first record: BAI2 opens
with a `01,` file header, camt.053 is XML in a camt.053 namespace (any version), MT940
has `:20:` and `:25:` tag lines near the start (after an optional SWIFT envelope).
"""

from __future__ import annotations

import re

from clearline.recon.intake import adyen, checkoutcom, checkoutcom_breakdown, stripe
from clearline.recon.intake.csv_report import split_header
from clearline.recon.intake.model import ParseError

CSV_LAYOUTS = {
    layout.name: layout for layout in (adyen.LAYOUT, stripe.LAYOUT, checkoutcom.LAYOUT, checkoutcom_breakdown.LAYOUT)
}
# Reports a processor sends that carry no lines: refused naming the report to send instead.
NO_LINES = (
    (checkoutcom_breakdown.PAYOUTS_REPORT, checkoutcom_breakdown.PAYOUTS_REFUSAL),
    (stripe.PAYMENTS_EXPORT, stripe.PAYMENTS_REFUSAL),
)
HEAD_CHARS = 8192  # what detection reads of a file
_CAMT = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.\d\d")
_MT940_TAG = re.compile(r"^:(20|25):", re.MULTILINE)


def detect(text: str) -> str:
    """adyen, stripe, checkoutcom, checkoutcom_breakdown, bai2, camt053 or mt940; ParseError if none fits."""
    head = text[:HEAD_CHARS].lstrip()
    if head.startswith("01,"):
        return "bai2"
    if head.startswith("<"):
        # a DOCTYPE goes to the camt.053 reader whatever else the head holds: it refuses the
        # document as hostile XML naming what it declares (a long internal subset can push
        # the namespace out of the head)
        if _CAMT.search(head) or "<!DOCTYPE" in head:
            return "camt053"
        raise ParseError("XML, but not an ISO 20022 camt.053 statement (no camt.053.001.xx namespace)", 1)
    if len(set(_MT940_TAG.findall(head))) == 2:
        return "mt940"
    return _csv_layout(head)


def _csv_layout(head: str) -> str:
    header, _ = split_header(head)
    fits = [name for name, layout in CSV_LAYOUTS.items() if not layout.missing(header)]
    if fits:  # two layouts share no required column set, so at most one fits
        return fits[0]
    for layout, refusal in NO_LINES:
        if not layout.missing(header):
            raise ParseError(refusal, 1)
    name, layout = max(CSV_LAYOUTS.items(), key=lambda item: item[1].met(header) / len(item[1].required))
    first = head.splitlines()[0][:80] if head else ""
    if len(header) < 2 or not layout.met(header):
        raise ParseError(f"not a known settlement report or bank statement (first line {first!r})", 1)
    if layout.met(header) * 2 < len(layout.required):
        raise ParseError(
            f"not a known settlement report or bank statement (first line {first!r}); the closest layout, "
            f"{name}, misses {layout.missing(header)}",
            1,
        )
    raise ParseError(
        f"wrong columns for the {name} layout: missing {layout.missing(header)}, "
        f"unexpected {layout.unexpected(header)}{layout.hint}",
        1,
    )
