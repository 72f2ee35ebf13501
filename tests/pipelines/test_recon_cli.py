"""`clearline recon`: the batch run, score and resolve as a person or a script uses them."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from clearline.pipelines.cli import main
from clearline.recon.variances.store import VarianceStore


def run(*args: str):
    return CliRunner().invoke(main, ["recon", *args], catch_exceptions=False)


def says(result, message: str) -> bool:
    """Whether the output holds `message`, however the console wrapped it."""
    return "".join(message.split()) in "".join(result.output.split())


def test_score_prints_precision_and_recall_per_category(small_world):
    world, manifest = small_world
    result = run("score", "--truth", str(world / "truth" / "discrepancies.csv"), "--world", str(world), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["perfect"] is True
    assert report["injected"] == sum(manifest["discrepancies"].values())
    for category, figures in report["categories"].items():
        assert figures["injected"] == manifest["discrepancies"].get(category, 0)  # 0: a kind the world never injects
        assert figures["precision"] == figures["recall"] == 1.0


def test_a_batch_run_records_variances_and_a_resolution_survives_the_next_run(small_world, tmp_path):
    world, _ = small_world
    state = tmp_path / "recon"
    args = ("--world", str(world), "--from", "2026-02-01", "--to", "2026-02-28", "--state-dir", str(state), "--json")
    first = json.loads(run(*args).output)
    assert first["variances"] == len(first["items"]) > 0 and first["new"] == first["variances"]
    assert all("2026-02-01" <= item["since"] <= "2026-02-28" for item in first["items"])
    vid = first["items"][0]["variance_id"]

    assigned = run(
        "resolve", vid, "--note", "asked the processor", "--assign", "ann", "--state-dir", str(state), "--json"
    )
    assert json.loads(assigned.output)["status"] == "assigned"
    resolved = run("--state-dir", str(state), "resolve", vid, "--note", "credited on 2026-03-04")
    assert resolved.exit_code == 0 and "resolved" in resolved.output

    again = json.loads(run(*args).output)
    assert again["new"] == 0 and again["seen_again"] == first["variances"]
    with VarianceStore(state / "variances.duckdb") as store:
        row = store.get(vid)
    assert (row["status"], row["assignee"], row["note"]) == ("resolved", "ann", "credited on 2026-03-04")
    listed = json.loads(run("list", "--status", "resolved", "--state-dir", str(state), "--json").output)
    assert [item["variance_id"] for item in listed["items"]] == [vid]
    still_open = json.loads(run("--state-dir", str(state), "list", "--status", "open", "--json").output)
    assert still_open["variances"] == first["variances"] - 1


def test_mistakes_are_one_clear_line_not_a_traceback(small_world, tmp_path):
    world, _ = small_world
    cases = [
        (("--world", str(tmp_path / "nowhere")), "is not a generated world"),
        (("--world", str(world), "--from", "2026-03-01", "--to", "2026-02-01"), "is after"),
        (("resolve", "var_nope", "--note", "x", "--state-dir", str(tmp_path)), "no variance store"),
        (("score", "--truth", str(world / "world.json"), "--world", str(world)), "is not a truth file"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert says(result, message) and "Traceback" not in result.output


def test_a_report_intake_cannot_read_stops_the_run_naming_the_file(small_world, tmp_path):
    world, _ = small_world
    copy = tmp_path / "world"
    for part in ("events", "settlements", "bank"):
        shutil.copytree(world / part, copy / part)
    broken = sorted((copy / "settlements" / "stripe").glob("*.csv"))[0]
    broken.write_text(broken.read_text().replace(",", ";", 40))
    result = run("--world", str(copy), "--state-dir", str(tmp_path / "recon"))
    assert result.exit_code == 2
    assert says(result, broken.name)
    assert says(run("--archive", str(tmp_path / "no-archive")), "no ledger event archive")
    (tmp_path / "archive").mkdir()
    assert says(
        run("--archive", str(tmp_path / "archive"), "--state-dir", str(tmp_path / "empty")),
        "run `clearline ingest` first",
    )


@pytest.mark.slow
def test_stored_inputs_give_the_same_variances_as_the_worlds_files(small_world, tmp_path):
    """The ledger's event archive plus the lines intake validated into its store (through
    the real `clearline ingest`, suites and all) reconcile exactly like the world's files."""
    from clearline import events
    from clearline.ledger import archive
    from clearline.ledger.model import Source

    world, _ = small_world
    bodies = (world / "events" / "events.jsonl").read_bytes().splitlines()
    archive.write_batch(
        tmp_path / "archive", 0, [(events.decode(b), Source("payments.events", 0, n), b) for n, b in enumerate(bodies)]
    )
    state = tmp_path / "recon"
    ingested = CliRunner().invoke(
        main,
        [
            "ingest",
            str(world / "settlements"),
            str(world / "bank"),
            "--no-publish",
            "--state-dir",
            str(state),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert json.loads(ingested.output)["quarantined"] == 0
    from_world = json.loads(run("--world", str(world), "--state-dir", str(tmp_path / "a"), "--json").output)
    stored = json.loads(run("--archive", str(tmp_path / "archive"), "--state-dir", str(state), "--json").output)
    assert stored["as_of"] == from_world["as_of"]
    assert [v["variance_id"] for v in stored["items"]] == [v["variance_id"] for v in from_world["items"]]


def test_score_of_stored_variances_judges_what_a_run_recorded(small_world, tmp_path):
    world, manifest = small_world
    truth = str(world / "truth" / "discrepancies.csv")
    state = tmp_path / "recon"
    nothing = run("score", "--truth", truth, "--state-dir", str(state))
    assert nothing.exit_code == 2 and says(nothing, f"no variance store in {state}")
    assert (
        run("--world", str(world), "--from", "2026-02-01", "--to", "2026-02-28", "--state-dir", str(state)).exit_code
        == 0
    )
    partial = json.loads(run("score", "--truth", truth, "--state-dir", str(state), "--json").output)
    assert partial["scored"] == str(state) and partial["missed"] > 0 and partial["unexpected"] == 0
    assert run("--world", str(world), "--state-dir", str(state)).exit_code == 0
    whole = json.loads(run("score", "--truth", truth, "--state-dir", str(state), "--json").output)
    assert whole["perfect"] and whole["variances"] == whole["injected"] == sum(manifest["discrepancies"].values())
