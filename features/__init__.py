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

The names below are the public surface: the shell, notebooks, benchmarks and the models
area import only these (clearline.surface explains why they load lazily).
"""

from clearline.surface import surface

__getattr__, __all__ = surface(
    __name__,
    {
        "store": "store:",
        "batch": "batch:",
        "MODEL_FEATURES": "batch",
        "feature_history": "batch",
        "order_features": "batch",
        "read_events": "batch",
        "BuyerState": "definitions",
        "DEFAULT_SPEC": "definitions",
        "FEATURE_EVENTS": "definitions",
        "Fact": "definitions",
        "ORDER_COLUMNS": "definitions",
        "Spec": "definitions",
        "buyer_feature_names": "definitions",
        "is_underwriting_request": "definitions",
        "merchant_ticket_names": "definitions",
        "read_buyer": "definitions",
        "spec_from_config": "definitions",
        "zscore_for": "definitions",
        "FeatureRow": "event_time",
        "LateEvent": "event_time",
        "feature_names": "feast_repo",
        "history_path": "feast_repo",
        "view_name": "feast_repo",
        "feast_frames": "feast_sink",
        "push_frames": "feast_sink",
        "push_steps": "feast_sink",
        "FeastWriter": "feast_writer",
        "SqliteOnlineRead": "online_read",
        "FeastSettings": "store",
        "apply": "store",
        "history_schema": "store",
        "open_store": "store",
        "point_in_time": "store",
        "settings_from_config": "store",
        "Answer": "stream_state",
        "advance_steps": "streaming",
    },
)
