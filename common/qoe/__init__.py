"""Real-time Quality-of-Experience core: pure, in-memory functions over JSON-serialisable dicts.

No Kafka, no Faust, no Cassandra here: the QoE agents keep these states in Faust tables (RocksDB store,
changelog topic) and call the functions; the metric definitions are those of shared/QOE.md (Mux Data's).

    views.new_session(sid) / views.apply(state, event) -> per-session state, one view at a time
    views.drain(state)                                  -> closed ViewMetrics + per-event Activity records
    views.tick / views.expire / views.close             -> reorder-window release, inactivity close
    windows.new_windows() / add_view / add_activity     -> tumbling 10 s / 60 s windows per scope
    windows.closable / finalise / evict                 -> WindowRow with deterministic keys
    cmcd.parse_* / cmcd.v1_event / cmcd.v2_events        -> CMCD v1 (request) and v2 (event mode) to PlaybackEvents
"""
