"""Sinks: the one writer of ClickHouse.

The sink consumes the stream jobs' output topics, writes rows in batches through
clickhouse-connect, and only then commits its Kafka offsets. With the embedded engine
(``chdb://``) it is the only process that may open the database, so it also answers
read-only queries over HTTP.
"""
