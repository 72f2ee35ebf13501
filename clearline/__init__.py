"""Clearline: a streaming risk and reconciliation pipeline for B2B payments.

This package is also the ground layer (docs/architecture.md): what every other part
shares and nothing else may define twice.

    events      the event contract: one envelope, one frozen type per event type
    currency    money in integer minor units and ISO 4217 currencies
    signing     HMAC-SHA256 signatures per tenant
    admission   a message admitted (tenant, signature, contract, no card numbers) or refused
    config      the configuration files and where relative state folders live
    surface     how each area names its public surface

Above it: the areas `clearline.ledger`, `clearline.features`, `clearline.models`,
`clearline.recon`, and the shell `clearline.pipelines` (the CLI, Kafka connectors and
dataflows). The default configuration is package data in `clearline.configs`.
"""
