"""Local servers (fetch, start, stop), their configs, and the Kafka topic reconciler."""
