"""The analysts' notebooks run headless, top to bottom, on a small generated world: the
backtest walkthrough trains, backtests and acts on its recommendation in a tmp MLflow store,
the variance review reads a real batch reconciliation and exports its open variances. And
the committed notebooks carry no outputs (nothing from someone's run leaks into git)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import openpyxl
import polars as pl
import pytest
from nbclient import NotebookClient

from clearline.recon.variances.store import read_variances
from tests import REPO_ROOT

pytestmark = pytest.mark.slow

NOTEBOOKS = REPO_ROOT / "notebooks"
NAMES = ("backtest_walkthrough", "variance_review")


def _cli(*args: str, tracking: Path | None = None) -> dict:
    env = {**os.environ, **({"MLFLOW_TRACKING_URI": f"sqlite:///{tracking}"} if tracking else {})}
    done = subprocess.run(
        [sys.executable, "-m", "clearline.pipelines.cli", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """A 300-day, 6-merchant world (seed 11, one that trains), reconciled into a recon state."""
    root = tmp_path_factory.mktemp("notebooks")
    _cli("generate", "--days", "300", "--merchants", "6", "--seed", "11", "--out", str(root / "world"))
    _cli("recon", "--world", str(root / "world"), "--state-dir", str(root / "recon"))
    (root / "mlflow").mkdir()
    return root


def _run(name: str, root: Path, monkeypatch) -> str:
    """Execute the committed notebook in a python3 kernel of this venv; every text it showed."""
    monkeypatch.setenv("CLEARLINE_NOTEBOOK_WORLD", str(root / "world"))
    monkeypatch.setenv("CLEARLINE_NOTEBOOK_RECON", str(root / "recon"))
    monkeypatch.setenv("CLEARLINE_NOTEBOOK_OUT", str(root / "reports"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return "\n".join(
        out.get("text", "") or out.get("data", {}).get("text/plain", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_have_no_outputs_and_run_on_python3(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "python3"
    assert any(c.cell_type == "markdown" for c in nb.cells)


def test_backtest_walkthrough_acts_on_its_recommendation(notebook_env, monkeypatch):
    shown = _run("backtest_walkthrough", notebook_env, monkeypatch)
    assert f"world:  {notebook_env / 'world'}" in shown
    assert str(notebook_env / "mlflow" / "mlflow.db") in shown  # the tmp store, not the project's
    recommendation = re.search(r"^recommendation: (promote|keep) — (.+)$", shown, re.M)
    assert recommendation, shown[-3000:]
    assert recommendation.group(2).startswith(f"{recommendation.group(1)} ")
    assert "leakage checks: " in shown and (notebook_env / "reports" / "backtest" / "backtest.html").stat().st_size > 0
    for metric in ("AUC", "Gini", "KS", "Brier", "approval rate", "bad rate"):
        assert metric in shown
    before = re.search(r"^champion: (\S+) v(\d+); challenger: (\S+) v(\d+)$", shown, re.M)
    assert before, shown[-3000:]
    listed = _cli("models", "list", tracking=notebook_env / "mlflow" / "mlflow.db")
    aliases = {a: (v["name"], v["version"]) for v in listed["versions"] for a in v["aliases"]}
    promoted = re.search(r"^promoted: (\S+) v(\d+) is now champion", shown, re.M)
    kept = re.search(r"^kept: (\S+) v(\d+) stays champion", shown, re.M)
    assert bool(promoted) != bool(kept)  # exactly one of them, said in words
    if promoted:
        assert recommendation.group(1) == "promote" and "leakage checks: passed" in shown
        assert aliases == {"champion": before.group(3, 4), "challenger": before.group(1, 2)}
    else:
        assert recommendation.group(1) == "keep" or "leakage checks: FIRED" in shown
        assert aliases == {"champion": before.group(1, 2), "challenger": before.group(3, 4)}
        assert kept.group(1, 2) == before.group(1, 2)


def test_variance_review_drills_into_the_largest_and_exports_every_open_variance(notebook_env, monkeypatch):
    shown = _run("variance_review", notebook_env, monkeypatch)
    stored = read_variances(notebook_env / "recon")
    open_ = stored.filter(pl.col("status") != "resolved")
    assert open_.height > 0
    largest = open_.sort(pl.col("amount_minor").abs(), "variance_id", descending=[True, False]).row(0, named=True)
    assert f"largest open variance: {largest['variance_id']}" in shown
    assert f"expected       {largest['expected']}" in shown and f"actual         {largest['actual']}" in shown
    assert largest["evidence"] and all(f"evidence       {e}" in shown for e in largest["evidence"])
    # file:line; a bank balance mismatch also lists the open variances that explain it
    assert re.fullmatch(r".+:\d+", largest["evidence"][0])
    assert all(re.fullmatch(r".+:\d+|var_[0-9a-f]{20}", e) for e in largest["evidence"])
    by_category = open_.group_by("category", "currency").agg(pl.len(), pl.col("amount_minor").abs().sum())
    for category, currency, count, minor in by_category.iter_rows():
        assert re.search(rf"{category}\s+┆ {currency}\s+┆ {count}\s+┆ {minor}\s", shown), (category, currency)
    for currency in open_["currency"].unique():
        count = open_.filter(pl.col("currency") == currency).height
        assert f"{currency}: {count} open" in shown
    csv = pl.read_csv(notebook_env / "reports" / "variances_open.csv")
    assert csv.height == open_.height and set(csv["variance_id"]) == set(open_["variance_id"])
    sheet = openpyxl.load_workbook(notebook_env / "reports" / "variances_open.xlsx", read_only=True)["open variances"]
    assert sum(1 for _ in sheet.iter_rows(min_row=2)) == open_.height
    assert f"exported {open_.height} open variances" in shown
