"""Intake: settlement reports and bank statements in, validated settlement lines out.

detect -> parse (one module per layout or format) -> normalise to `clearline.recon.lines` records ->
Great Expectations suite -> Parquet store + `payments.settlements`, or quarantine with a
report. `parse.parse_file` is the entry point for the pure part; `ingest.Intake` the shell.
"""
