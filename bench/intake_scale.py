"""Benchmark: peak memory of `clearline ingest` on one large processor report or bank statement.

Writes a Stripe itemized payout reconciliation report of about `--mb` megabytes in the
real layout: a generated world's Stripe report, as `clearline.pipelines.world.settlement_files`
writes it (header and rows), repeated with each copy's line, payout and payment ids made
its own, so the file stays valid (every line id once, each payout's row equal to the sum
of its copy's lines). With `--format mt940`, an MT940 statement instead: the world's
largest, its entries (`:61:` with their `:86:`) repeated and its closing balance `:62F:`
made their sum, so the statement adds up (a bank statement may repeat a line). With
`--format bai2` and `--format camt053` likewise the world's largest BAI2 file (its 16
details with their 88s repeated; the 03 summaries, the 015 closing ledger and the 49, 98
and 99 control totals and record counts recomputed) or camt.053 statement (its `Ntry`
repeated; the closing balance CLBD and the TxsSummry counts and sums scaled). Then, each
as a child process whose peak RSS (VmHWM) is sampled until it exits:

* baseline: a bare `polars.scan_csv(file).sink_parquet(...)` of the same file, the
  cheapest way to turn the CSV into Parquet (no types, no checks);
* intake: `clearline ingest FILE --state-dir <fresh> --json` (with `--no-publish` unless
  `--publish`): detection, parsing, the suite, identity, the Parquet store.

It prints the file's size, each peak, the intake's peak as a multiple of the file and of
the baseline, the lines taken in and the seconds, and exits 1 (printing the figures) when
the file is not accepted whole. The aim (issue 15): peak at most 3x the file and at most
1 GiB.

    python bench/intake_scale.py --mb 200 [--format stripe|mt940|bai2|camt053] [--publish] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from ledger_throughput import _status_kib  # /proc/<pid>/status, as the ledger benchmark samples VmHWM

from clearline.pipelines.world.generate import WorldOptions, generate

# the Stripe columns that name a line, its payout or its payment: made unique per copy
ID_COLUMNS = (
    "balance_transaction_id",
    "automatic_payout_id",
    "source_id",
    "charge_id",
    "payment_intent_id",
    "payment_metadata[merchant_reference]",
)
CLEARLINE = Path(sys.executable).with_name("clearline")


def template(folder: Path) -> Path:
    """The largest Stripe report of a generated world (the writer's own layout)."""
    generate(WorldOptions(days=60, merchants=12, seed=7), folder)
    reports = sorted((folder / "settlements" / "stripe").glob("*.csv"), key=lambda p: p.stat().st_size)
    if not reports:
        raise SystemExit("the generated world has no Stripe report")
    return reports[-1]


def statement_template(folder: Path, suffix: str) -> Path:
    """The largest bank statement file of a generated world named `*.suffix` (the writer's own layout)."""
    generate(WorldOptions(days=60, merchants=12, seed=7), folder)
    statements = sorted((folder / "bank").glob(f"*/*.{suffix}"), key=lambda p: p.stat().st_size)
    if not statements:
        raise SystemExit(f"the generated world has no *.{suffix} statement")
    return statements[-1]


_BALANCE = re.compile(r"^:(60F|62F):([CD])(\d{6})([A-Z]{3})(\d+),(\d{2})$", re.MULTILINE)


def write_mt940(source: Path, target: Path, size: int) -> int:
    """`source`'s entries repeated into `target` until it holds at least `size` bytes, the
    closing balance the opening plus every copy's movements; entries written."""
    text = source.read_text(encoding="utf-8")
    start, end = text.index("\n:61:") + 1, text.index(":62F:")
    head, body = text[:start], text[start:end]
    balances = {m.group(1): m for m in _BALANCE.finditer(text)}
    opening, closing = (_minor(balances[tag]) for tag in ("60F", "62F"))
    entries, copies = body.count(":61:"), max(1, -(-(size - len(text)) // len(body)))
    total = opening + copies * (closing - opening)
    day, ccy = balances["62F"].group(3), balances["62F"].group(4)
    sign, units = ("C" if total >= 0 else "D"), abs(total)
    with target.open("w", encoding="utf-8", newline="") as out:
        out.write(head)
        for _ in range(copies):
            out.write(body)
        out.write(f":62F:{sign}{day}{ccy}{units // 100},{units % 100:02d}\n")
    return entries * copies


def _minor(balance: re.Match) -> int:
    return (1 if balance.group(2) == "C" else -1) * (int(balance.group(5)) * 100 + int(balance.group(6)))


def _copies(size: int, whole: int, body: int) -> int:
    return max(1, -(-(size - whole) // body))


def write_bai2(source: Path, target: Path, size: int) -> int:
    """`source`'s details (16 records with their 88s; one group of one account) repeated
    into `target` until it holds at least `size` bytes, every summary and trailer
    recomputed so the file adds up; details written."""
    lines = source.read_text(encoding="utf-8").splitlines()
    codes = [line[:2] for line in lines]
    if codes.count("03") != 1 or codes.count("02") != 1:
        raise SystemExit(f"{source} is not one group of one account")
    start, end = codes.index("16"), codes.index("49")
    head, body = lines[:start], lines[start:end]
    copies = _copies(size, len("\n".join(lines)), len("\n".join(body)) + 1)
    amounts = sum(int(line.split(",")[2]) for line in body if line.startswith("16,"))
    fields = head[2].rstrip("/").split(",")
    summaries = {fields[i]: i for i in range(3, len(fields) - 3, 4)}
    opening, closing = int(fields[summaries["010"] + 1]), int(fields[summaries["015"] + 1])
    fields[summaries["015"] + 1] = str(opening + copies * (closing - opening))
    for code in ("100", "400"):  # total credits, total debits: amount and item count
        if code in summaries:
            for at in (summaries[code] + 1, summaries[code] + 2):
                fields[at] = str(copies * int(fields[at])) if fields[at] else fields[at]
    head[2] = ",".join(fields) + "/"
    account_total = sum(int(fields[i + 1] or 0) for i in summaries.values()) + copies * amounts
    account_records = 1 + copies * len(body) + 1
    with target.open("w", encoding="utf-8", newline="") as out:
        out.write("\n".join(head) + "\n")
        for _ in range(copies):
            out.write("\n".join(body) + "\n")
        out.write(f"49,{account_total},{account_records}/\n")
        out.write(f"98,{account_total},1,{account_records + 2}/\n")
        out.write(f"99,{account_total},1,{account_records + 4}/\n")
    return copies * sum(line.startswith("16,") for line in body)


_CAMT_BALANCE = re.compile(
    r"<Cd>(OPBD|CLBD)</Cd>.*?<Amt Ccy=\"([A-Z]{3})\">([0-9.]+)</Amt>\s*<CdtDbtInd>(CRDT|DBIT)<", re.S
)
_CAMT_SUMMARY = re.compile(r"<TxsSummry>.*?</TxsSummry>", re.S)


def write_camt053(source: Path, target: Path, size: int) -> int:
    """`source`'s entries (`Ntry`; one statement) repeated into `target` until it holds at
    least `size` bytes, the closing balance CLBD the opening plus every copy's movements and
    the TxsSummry counts and sums scaled alike; entries written."""
    text = source.read_text(encoding="utf-8")
    if text.count("<Stmt>") != 1:
        raise SystemExit(f"{source} is not one statement")
    start, end = text.index("<Ntry>"), text.rindex("</Ntry>") + len("</Ntry>")
    head, body, tail = text[:start], text[start:end], text[end:]
    copies = _copies(size, len(text), len(body))
    balances = {m.group(1): m for m in _CAMT_BALANCE.finditer(head)}
    opening, closing = (_camt_signed(balances[code]) for code in ("OPBD", "CLBD"))
    total = opening + copies * (closing - opening)
    clbd = balances["CLBD"]
    head = (
        head[: clbd.start(3)]
        + f"{abs(total)}"
        + head[clbd.end(3) : clbd.start(4)]
        + ("CRDT" if total >= 0 else "DBIT")
        + head[clbd.end(4) :]
    )
    summary = _CAMT_SUMMARY.search(head)
    if summary:
        scaled = re.sub(
            r"<(NbOfNtries|Sum|Amt)( [^>]*)?>([0-9.]+)</",
            lambda m: f"<{m.group(1)}{m.group(2) or ''}>{Decimal(m.group(3)) * copies}</",
            summary.group(0),
        )
        head = head[: summary.start()] + scaled + head[summary.end() :]
    with target.open("w", encoding="utf-8", newline="") as out:
        out.write(head)
        for _ in range(copies):
            out.write(body)
        out.write(tail)
    return copies * body.count("<Ntry>")


def _camt_signed(balance: re.Match) -> Decimal:
    return Decimal(balance.group(3)) * (1 if balance.group(4) == "CRDT" else -1)


def write_report(source: Path, target: Path, size: int) -> int:
    """`source`'s rows repeated into `target` until it holds at least `size` bytes; data rows written."""
    with source.open(newline="", encoding="utf-8") as handle:
        header, *rows = csv.reader(handle)
    ids = [header.index(c) for c in ID_COLUMNS if c in header]
    written, copy = 0, 0
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        while out.tell() < size:
            for row in rows:
                row = list(row)
                for i in ids:
                    if row[i]:
                        row[i] = f"{row[i]}_{copy}"
                writer.writerow(row)
            written += len(rows)
            copy += 1
    return written


# format -> the world's file suffix, and the writer of a large statement from one
STATEMENTS = {"mt940": ("sta", write_mt940), "bai2": ("bai", write_bai2), "camt053": ("xml", write_camt053)}


def run(cmd: list[str], limit_kib: int | None = None) -> tuple[float, int, str | None]:
    """(seconds, peak RSS in KiB, stdout) of `cmd` run to its end; VmHWM sampled every 50 ms
    (its peak is missed only if it came in its last 50 ms). A child whose peak passes
    `limit_kib` is stopped there (stdout None): on a shared machine a run that cannot meet
    its aim must not take the memory of everything else."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while child.poll() is None:
        peak = max(peak, _status_kib(child.pid, "VmHWM"))
        if limit_kib is not None and peak > limit_kib:
            child.kill()
            child.communicate()
            return time.perf_counter() - start, peak, None
        time.sleep(0.05)
    out, err = child.communicate()
    seconds = time.perf_counter() - start
    if child.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({child.returncode}): {err[-2000:]}")
    return seconds, peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200, help="report size in MB (10^6 bytes)")
    ap.add_argument("--format", choices=("stripe", *STATEMENTS), default="stripe", help="what the file is")
    ap.add_argument("--publish", action="store_true", help="publish the lines to Kafka (the broker must be up)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--limit-mib", type=int, default=None, help="stop the intake once its peak passes this")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        if args.format in STATEMENTS:
            suffix, write = STATEMENTS[args.format]
            report = work / f"statement_bench.{suffix}"
            lines = write(statement_template(work / "world", suffix), report, int(args.mb * 1e6))
        else:
            report = work / "payout_reconciliation_bench.csv"
            lines = write_report(template(work / "world"), report, int(args.mb * 1e6))
        size = report.stat().st_size
        load_before = os.getloadavg()[0]
        # the baseline reads the file as lines (one column) where it is no CSV
        csv_options = "" if args.format == "stripe" else ", has_header=False, separator='\\x1f', quote_char=None"
        bare = str(work / "bare.parquet")
        sink = f"import polars as pl; pl.scan_csv({str(report)!r}{csv_options}).sink_parquet({bare!r})"
        base_s, base_kib, _ = run([sys.executable, "-c", sink])
        cmd = [str(CLEARLINE), "ingest", str(report), "--state-dir", str(work / "state"), "--json"]
        limit = args.limit_mib * 1024 if args.limit_mib else None
        intake_s, intake_kib, out = run([*cmd, *([] if args.publish else ["--no-publish"])], limit)
        load_after = os.getloadavg()[0]
    files = (json.loads(out).get("outcomes") or []) if out is not None else []
    statuses = [f.get("status") for f in files]
    taken = sum(f.get("lines", 0) for f in files)
    peak = intake_kib * 1024
    result = {
        "format": args.format,
        "file_bytes": size,
        "file_mib": round(size / 2**20, 1),
        "data_rows": lines,  # report rows, or statement entries
        "lines_taken_in": taken,
        "statuses": statuses,
        "intake_seconds": round(intake_s, 1),
        "intake_peak_rss_mib": round(peak / 2**20),
        "intake_peak_to_file": round(peak / size, 2),
        "baseline_seconds": round(base_s, 1),
        "baseline_peak_rss_mib": round(base_kib / 1024),
        "intake_peak_to_baseline_peak": round(intake_kib / base_kib, 2),
        "intake_seconds_to_baseline": round(intake_s / base_s, 1),
        "stopped_at_limit_mib": args.limit_mib if out is None else None,
        "aim_met": out is not None and peak <= 3 * size and peak <= 2**30,
        "published": args.publish,
        "load_average_before_after": [round(load_before, 1), round(load_after, 1)],
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}",
    }
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:>30}: {v}" for k, v in result.items()))
    if out is None:
        raise SystemExit(f"error: the intake passed {args.limit_mib} MiB after {intake_s:.0f} s and was stopped")
    if statuses != ["accepted"]:
        raise SystemExit(f"error: the report was not accepted whole: {files}")


if __name__ == "__main__":
    main()
