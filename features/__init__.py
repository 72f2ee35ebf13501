"""Risk features: one definition, two runtimes, and the Feast store (docs/features.md).

definitions   names, windows, typed state, pure update and read functions
records       the frozen record type the state is made of (pickles fast)
event_time    per-entity event-time order with allowed lateness (late side output)
stream_state  every entity's clock, advanced one arrival batch at a time
batch         the vectorised runtime over a world or the archive (order_features)
streaming     the Bytewax runtime (advance_steps, feature_steps, run_bounded)
feast_repo    entities, push sources and feature views
store         feature_store.yaml, apply, push, direct online write, online and point-in-time reads
online_read   a request's rows straight from Feast's SQLite online tables
feast_sink    Bytewax outputs that push streaming rows to Feast, one writer per store
feast_writer  the child process each of those outputs writes through
"""
