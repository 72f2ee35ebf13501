"""The double-entry ledger: posting rules, the store, invariants and the hash chain."""
