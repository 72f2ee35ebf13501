"""What a person's form (or an API body) asks for, read into the fields `actions` takes:
a resolution or an assignment, a date, the legs of an adjusting entry. Bad input is
`actions.Refused` with words for the person."""

from __future__ import annotations

from datetime import date
from typing import Any

from clearline.pipelines.workbench import actions
from clearline.pipelines.workbench.settings import WorkbenchSettings

MAX_LEGS = 20  # leg rows a proposal form may carry


def parse_date(text: Any) -> date | None:
    if text in (None, ""):
        return None
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise actions.Refused(f"{text!r} is not a date (YYYY-MM-DD)") from None


def request_from_form(form, settings: WorkbenchSettings, today: date) -> dict[str, Any]:
    """An assignment (action=assign) or a resolution (code, note, watch_until)."""
    if str(form.get("action") or "") == "assign":
        return actions.assignment(str(form.get("note") or ""), str(form.get("assignee") or ""))
    return actions.resolution(
        settings, str(form.get("code") or ""), str(form.get("note") or ""), parse_date(form.get("watch_until")), today
    )


def legs_from_form(form) -> list[dict[str, Any]]:
    """The edited legs: rows leg_account_N / leg_side_N / leg_minor_N; blank rows skipped."""
    legs = []
    for n in range(MAX_LEGS):
        account = str(form.get(f"leg_account_{n}") or "").strip()
        if not account:
            continue
        minor = str(form.get(f"leg_minor_{n}") or "").strip()
        if not minor.lstrip("-").isdigit():
            raise actions.Refused(f"leg {n + 1}: amount {minor!r} is not a whole number of minor units")
        legs.append({"account": account, "side": str(form.get(f"leg_side_{n}") or ""), "minor": int(minor)})
    return legs


def manual_body(v: dict) -> dict[str, Any]:
    """An empty proposal for a variance with no standard entry: the person writes the legs."""
    return {
        "variance_id": v["variance_id"],
        "merchant_id": v.get("merchant_id"),
        "processor": v.get("processor"),
        "currency": v["currency"],
        "kind": "manual",
        "legs": [],
        "memo": "",
    }
