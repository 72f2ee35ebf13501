"""Bytewax dataflows. Each is wiring: it names the steps and calls the functional core."""
