"""Three-way matching: the ledger's expectations against processor lines, processor
payouts against bank lines, and every difference classified as a variance.

The rules are plain functions over Polars frames (`settlements`, `bank`) so a stream that
keeps a few keys' worth of state and a batch over ten million rows call the same code;
`reconcile.reconcile` puts them together. Nothing here reads a file, a topic or a store.
"""
