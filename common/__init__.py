"""Pieces shared by every process: settings, the Avro codec, Kafka/Cassandra/S3 clients, metrics."""
