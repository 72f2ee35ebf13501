"""Clearline's tests, one folder per area (contract, ledger, features, models, recon), the
shell (pipelines) and the end-to-end runs (e2e)."""

from pathlib import Path

# The checkout the tests run from: its docker-compose.yml, notebooks and benchmarks are
# tested as files. The package itself never looks for the repository.
REPO_ROOT = Path(__file__).resolve().parent.parent
