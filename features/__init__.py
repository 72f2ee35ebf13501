"""Risk features: one definition, two runtimes, and the Feast store (docs/features.md).

    definitions   names, windows, typed state, pure update and read functions
    event_time    per-entity event-time order with allowed lateness (late side output)
    batch         the vectorised runtime over a world or the archive (order_features)
    streaming     the Bytewax runtime (feature_steps, run_bounded)
    feast_repo    entities, push sources and feature views
    store         feature_store.yaml, apply, push, online and point-in-time reads
    feast_sink    Bytewax outputs that push streaming rows to Feast
"""
