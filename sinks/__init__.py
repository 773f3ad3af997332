"""Cassandra writers and the CQL schema, applied by ordered, idempotent migrations (sinks/migrate.py)."""
