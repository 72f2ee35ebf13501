"""Clearline pipelines: the event contract, Kafka I/O, the dataflows and the CLI."""
