"""Code that puts events on Kafka from outside the stream (upload service, telemetry gateway)."""
