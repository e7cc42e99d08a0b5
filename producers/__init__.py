"""Producers: put events on Kafka, validated and batched per partition.

Public surface: :class:`EventProducer` and :func:`publish_jsonl`.
"""

from producers.event_producer import BackpressureError, DeliveryReport, EventProducer, MissingTopicError
from producers.jsonl_file import FileReport, publish_jsonl

__all__ = [
    "BackpressureError",
    "DeliveryReport",
    "EventProducer",
    "FileReport",
    "MissingTopicError",
    "publish_jsonl",
]
