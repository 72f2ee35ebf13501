"""The finance workbench: the variance queue in a browser, evidence side by side,
resolutions with reasons, adjusting entries under maker-checker control (docs/workbench.md).

    settings    configs/workbench.yaml and where the state folders are
    state       its own SQLite store: users, API tokens, proposals, the audit log
    audit       the audit log's hash chain (append, verify)
    auth        password hashing (argon2), API tokens, roles
    queue       the queue's query builder (a pure function) and its DuckDB runner
    sources     the published snapshots it reads: variances, ledger, merchant owners, lines
    actions     what a person does: assign, resolve, propose, approve (through the queue the
                recon flow applies, and `adjustment.posted` events)
    forms       a form (or API body) read into what `actions` takes
    web         what every route shares: who asks, tenants, CSRF, templates, the form-POST shape
    routes_*    one router per concern: login, queue, variance, proposals, freezes, kpis, api
    app         `create_app`: assembles the routers over the shared dependencies (templates/)

`clearline workbench` (pipelines/cli/workbench.py) serves it.
"""
