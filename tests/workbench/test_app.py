"""The workbench over HTTP, served by uvicorn on a free port, on a real deployment's
published snapshots: logging in, the queue, a variance's evidence, resolving and assigning
(one and many), tenants kept apart by page and by API, CSRF refused, sessions expiring,
every action in the audit log."""

from __future__ import annotations

import re
import subprocess
import sys

import polars as pl
import pytest

from clearline.pipelines.workbench.state import WorkbenchState
from clearline.recon import PUBLISHED_VARIANCES, pending_resolutions
from tests.workbench.web import Browser, Clock, add_users, csrf_of, serving

USERS = (
    ("pat", "resolver", "platform"),
    ("val", "viewer", "platform"),
    ("ria", "resolver", "rs_002"),
    ("tom", "approver", "rs_003"),
)


def published(settings) -> pl.DataFrame:
    return pl.read_parquet(settings.recon_state / PUBLISHED_VARIANCES)


def owners(settings) -> dict[str, str]:
    files = sorted((settings.ledger_state / "archive").glob("event_date=*/*.parquet"))
    frame = pl.scan_parquet(files).select("merchant_id", "reseller_id").unique().collect()
    return dict(frame.iter_rows())


def tenant_rows(settings, tenant: str) -> pl.DataFrame:
    mine = [m for m, r in owners(settings).items() if r == tenant]
    return published(settings).filter(pl.col("merchant_id").is_in(mine))


def ids_on(html: str) -> list[str]:
    return re.findall(r'name="ids" value="(var_[0-9a-f]+)"', html)


@pytest.fixture
def app(deployment_copy):
    add_users(deployment_copy, *USERS)
    clock = Clock()
    with serving(deployment_copy, clock) as base:
        yield deployment_copy, base, clock


def test_logging_in_and_the_queue_shows_the_published_variances(app):
    settings, base, _ = app
    b = Browser(base)
    assert b.get("/queue").headers["location"].startswith("/login")
    token = csrf_of(b.get("/login").text)
    wrong = b.post("/login", data={"name": "pat", "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
    b.login("pat")
    unresolved = published(settings).filter(pl.col("status") != "resolved")
    page = b.get("/queue?page_size=500").text
    assert re.search(rf"<strong>{unresolved.height}</strong> variance\(s\) match", page)
    assert set(ids_on(page)) == set(unresolved["variance_id"])
    fee = b.get("/queue?category=fee_mismatch").text
    assert set(ids_on(fee)) == set(unresolved.filter(pl.col("category") == "fee_mismatch")["variance_id"])
    actions = [r["action"] for r in WorkbenchState(settings.state_dir).audit_rows()]
    assert actions == ["login_failed", "login"]


def test_a_fee_mismatch_page_shows_its_evidence_side_by_side(app):
    settings, base, _ = app
    b = Browser(base)
    b.login("pat")
    v = published(settings).filter(pl.col("category") == "fee_mismatch").row(0, named=True)
    page = b.get(f"/variances/{v['variance_id']}").text
    assert f"expected <b>{v['expected']}</b>, reported <b>{v['actual']}</b>" in page
    for event_id in v["ledger_event_ids"]:
        assert event_id in page.split('id="ledger"')[1].split('id="files"')[0]
    files = page.split('id="files"')[1].split('id="act"')[0]
    for item in v["evidence"]:
        name, line = item.rsplit(":", 1)
        assert f"<code>{name}</code> line {line}" in files
    # the processor's raw row as it stands in its file: a (field, value) table, the fee marked
    raw = files.split('<table class="raw">')[1:]
    assert raw and "<th>Field</th><th>Value</th>" in raw[0]
    marked = re.findall(r'<tr class="hl"><th>([^<]*)</th><td>([^<]*)</td></tr>', "".join(raw))
    reported = v["actual"].split()[0]
    assert any("fee" in name.lower() or value.lstrip("-") == reported for name, value in marked), marked


def test_every_fee_mismatchs_raw_row_marks_the_fee(app):
    """Whichever processor reported it (their layouts spell the fee differently)."""
    settings, base, _ = app
    b = Browser(base)
    b.login("pat")
    fees = published(settings).filter(pl.col("category") == "fee_mismatch")
    assert fees.height
    for v in fees.unique("processor").iter_rows(named=True):
        files = b.get(f"/variances/{v['variance_id']}").text.split('id="files"')[1].split('id="act"')[0]
        raw = "".join(files.split('<table class="raw">')[1:]).split('class="fields"')[0]
        assert '<tr class="hl">' in raw, (v["processor"], raw)


def test_resolving_and_assigning_reach_the_store_with_the_actor_and_the_audit_log(app):
    settings, base, _ = app
    b = Browser(base)
    token = b.login("pat")
    open_ids = published(settings).filter(pl.col("status") == "open")["variance_id"].to_list()
    one, two, three = open_ids[:3]
    r = b.post(
        f"/variances/{one}/move",
        data={"csrf_token": token, "action": "resolve", "code": "bank_error", "note": "bank fixed it"},
    )
    assert r.status_code == 303
    page = b.get(f"/variances/{one}").text
    assert "Resolved (applied)" in page and '<td id="status">resolved' in page
    history = page.split('id="history"')[1].split('id="audit"')[0]
    assert "<td>resolved</td><td>pat</td><td>bank_error</td>" in history
    assert "<td>pat</td><td>resolve</td>" in page.split('id="audit"')[1]
    bulk = b.post(
        "/queue/bulk",
        data={"csrf_token": token, "action": "assign", "assignee": "ria", "note": "yours", "ids": [two, three]},
    )
    assert bulk.status_code == 303
    rows = published(settings).filter(pl.col("variance_id").is_in([one, two, three])).sort("variance_id")
    assert dict(rows.select("variance_id", "status").iter_rows()) == {
        one: "resolved",
        two: "assigned",
        three: "assigned",
    }
    assert set(rows.filter(pl.col("variance_id") != one)["assignee"]) == {"ria"}
    timing = b.post(
        f"/variances/{open_ids[3]}/move",
        data={"csrf_token": token, "action": "resolve", "code": "timing", "note": "in transit"},
    )
    assert timing.status_code == 303
    assert "give the date by which it must clear" in b.get(f"/variances/{open_ids[3]}").text
    audit = WorkbenchState(settings.state_dir)
    assert [(r["action"], r["variance_id"]) for r in audit.audit_rows()][1:] == [
        ("resolve", one),
        ("assign", two),
        ("assign", three),
    ]
    assert audit.verify_audit() is None


def test_a_viewer_reads_but_does_not_act(app):
    settings, base, _ = app
    b = Browser(base)
    token = b.login("val")
    vid = published(settings).filter(pl.col("status") == "open")["variance_id"][0]
    assert 'id="resolve_form"' not in b.get(f"/variances/{vid}").text
    b.post(f"/variances/{vid}/move", data={"csrf_token": token, "action": "resolve", "code": "bank_error", "note": "x"})
    assert "only a resolver or an approver" in b.get(f"/variances/{vid}").text
    state = WorkbenchState(settings.state_dir)
    val, pat = ({"Authorization": f"Bearer {state.add_token(n)}"} for n in ("val", "pat"))
    move = f"{base}/api/variances/{vid}/move"
    assert b.http.post(move, headers=val, json={"code": "bank_error", "note": "x"}).status_code == 403
    bad = b.http.post(move, headers=pat, json={"code": "no_such_code", "note": "x"})
    assert bad.status_code == 422 and "choose one of" in bad.json()["error"]
    assert published(settings).filter(pl.col("variance_id") == vid)["status"][0] == "open"
    done = b.http.post(move, headers=pat, json={"code": "timing", "note": "in transit", "watch_until": "2999-01-01"})
    assert done.json() == {"variance_id": vid, "outcome": "applied"}
    row = published(settings).filter(pl.col("variance_id") == vid).row(0, named=True)
    assert (row["status"], row["code"], str(row["watch_until"])) == ("watched", "timing", "2999-01-01")


def test_a_resellers_user_sees_and_acts_on_only_its_own_merchants_by_page_and_by_api(app):
    settings, base, _ = app
    mine, theirs = tenant_rows(settings, "rs_002"), tenant_rows(settings, "rs_003")
    nobodys = published(settings).filter(pl.col("merchant_id").is_null())
    assert mine.height and theirs.height and nobodys.height
    b = Browser(base)
    token = b.login("ria")
    listed = ids_on(b.get("/queue?status=all&page_size=500").text)
    assert set(listed) == set(mine["variance_id"])
    for vid in (theirs["variance_id"][0], nobodys["variance_id"][0], "var_00000000000000000000"):
        assert b.get(f"/variances/{vid}").status_code == 404
        r = b.post(f"/variances/{vid}/move", data={"csrf_token": token, "action": "assign", "assignee": "ria"})
        assert r.status_code == 404
    bulk = b.post(
        "/queue/bulk",
        data={
            "csrf_token": token,
            "action": "assign",
            "assignee": "ria",
            "ids": [mine["variance_id"][0], theirs["variance_id"][0]],
        },
    )
    assert bulk.status_code == 404
    assert pending_resolutions(settings.recon_state) == []
    assert published(settings).filter(pl.col("assignee") == "ria").is_empty()

    api_token = WorkbenchState(settings.state_dir).add_token("ria")
    auth = {"Authorization": f"Bearer {api_token}"}
    assert b.http.get(f"{base}/api/variances").status_code == 401
    listed = b.http.get(f"{base}/api/variances?status=all&page_size=500", headers=auth).json()
    assert listed["count"] == mine.height
    assert {v["variance_id"] for v in listed["variances"]} == set(mine["variance_id"])
    other = theirs["variance_id"][0]
    assert b.http.get(f"{base}/api/variances/{other}", headers=auth).status_code == 404
    moved = b.http.post(f"{base}/api/variances/{other}/move", headers=auth, json={"code": "bank_error", "note": "x"})
    assert moved.status_code == 404
    own = mine["variance_id"][0]
    assert b.http.get(f"{base}/api/variances/{own}", headers=auth).json()["variance_id"] == own


def test_forms_without_the_sessions_csrf_token_are_refused(app):
    settings, base, _ = app
    b = Browser(base)
    assert b.post("/login", data={"name": "pat", "password": "x"}).status_code == 403
    b.login("pat")
    vid = published(settings).filter(pl.col("status") == "open")["variance_id"][0]
    form = {"action": "resolve", "code": "bank_error", "note": "forged"}
    assert b.post(f"/variances/{vid}/move", data=form).status_code == 403
    assert b.post(f"/variances/{vid}/move", data={**form, "csrf_token": "not-the-token"}).status_code == 403
    other = Browser(base)
    other_token = other.login("pat")  # a token of another session is not this one's
    assert b.post(f"/variances/{vid}/move", data={**form, "csrf_token": other_token}).status_code == 403
    assert pending_resolutions(settings.recon_state) == []
    assert published(settings).filter(pl.col("variance_id") == vid)["status"][0] == "open"


def test_a_session_expires_after_the_configured_minutes(app):
    settings, base, clock = app
    b = Browser(base)
    b.login("pat")
    clock.now += settings.session_minutes * 60 - 5
    assert b.get("/queue").status_code == 200
    clock.now += 10
    r = b.get("/queue")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert "Your session expired" in b.get("/login").text


def test_while_a_flow_holds_the_store_actions_wait_in_the_queue_and_survive_it(app):
    """A process holding the variance store (as the running recon flow does) is killed
    while a person's resolution waits: the page showed it queued, and the next holder
    applies it with its actor and code."""
    settings, base, _ = app
    b = Browser(base)
    token = b.login("pat")
    vid, other = published(settings).filter(pl.col("status") == "open")["variance_id"][:2]
    assign = {"csrf_token": token, "action": "assign", "assignee": "pat", "note": "mine"}
    b.post(f"/variances/{other}/move", data=assign)  # applied at once: the store and its history published
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
         " time.sleep(600)", str(settings.recon_state / "variances.duckdb")],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        form = {"csrf_token": token, "action": "resolve", "code": "processor_error", "note": "claim raised"}
        b.post(f"/variances/{vid}/move", data=form)
        page = b.get(f"/variances/{vid}").text
        assert "Resolved (queued)" in page and "Queued for the running recon flow" in page
        assert "pat: resolve (processor_error)" in page
        assert "<td>open</td>" in page.split('id="history"')[1]  # the published history, read without the store
    finally:
        holder.kill()
        holder.wait()
    from clearline.pipelines.workbench.actions import settle

    assert settle(settings) == "applied"
    row = published(settings).filter(pl.col("variance_id") == vid).row(0, named=True)
    assert (row["status"], row["code"], row["note"]) == ("resolved", "processor_error", "claim raised")
    assert pending_resolutions(settings.recon_state) == []


def test_the_kpi_page_shows_the_tables_kpis_compute_gives_for_the_persons_tenant(app):
    from clearline.pipelines.workbench import kpis

    settings, base, _ = app
    sources = kpis.KpiSources.from_config(settings.ledger_state, settings.recon_state)
    for name, tenant in (("pat", None), ("ria", "rs_002")):
        b = Browser(base)
        b.login(name)
        page = b.get("/kpis").text
        tables = kpis.compute(sources, tenant)
        assert tables and re.findall(r"<h2>(.*?)</h2>", page) == [_escape(t) for t in tables]
        for frame in tables.values():
            for row in frame.head(3).iter_rows():
                cells = "".join(f"<td>{_escape(_cell(v))}</td>" for v in row)
                assert cells in page


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def _cell(value) -> str:
    from clearline.pipelines.workbench.web import cell

    return cell(value)


def test_what_people_type_is_shown_as_text_never_as_markup(app):
    settings, base, _ = app
    b = Browser(base)
    token = b.login("pat")
    vid = published(settings).filter(pl.col("status") == "open")["variance_id"][0]
    note = '<script>alert("x")</script>'
    b.post(f"/variances/{vid}/move", data={"csrf_token": token, "action": "assign", "assignee": "pat", "note": note})
    page = b.get(f"/variances/{vid}").text
    assert note not in page and "&lt;script&gt;alert(" in page


def test_a_change_made_to_the_store_without_the_workbench_shows_on_the_next_page(app):
    """`clearline recon resolve` (or a batch run) writes the store while no flow runs:
    the snapshot is then older than the store, and the workbench publishes it again."""
    from clearline.recon import VarianceStore

    settings, base, _ = app
    b = Browser(base)
    b.login("pat")
    vid = published(settings).filter(pl.col("status") == "open")["variance_id"][0]
    assert '<td id="status">open' in b.get(f"/variances/{vid}").text
    with VarianceStore(settings.recon_state / "variances.duckdb") as store:
        store.move(vid, "resolved from the terminal")
    page = b.get(f"/variances/{vid}").text
    assert '<td id="status">resolved' in page and "resolved from the terminal" in page
    assert vid not in ids_on(b.get("/queue?page_size=500").text)
