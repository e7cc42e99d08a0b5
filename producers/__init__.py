"""Producers: put events on Kafka, validated and batched per partition.

Public surface: :class:`EventProducer`, :func:`publish_jsonl` and :func:`publish_lines`;
the journey simulator is :mod:`producers.simulator`, the HTTP collector :mod:`producers.collector`.
"""

from producers.event_producer import BackpressureError, DeliveryReport, EventProducer, MissingTopicError
from producers.jsonl_file import FileReport, publish_jsonl, publish_lines

__all__ = [
    "BackpressureError",
    "DeliveryReport",
    "EventProducer",
    "FileReport",
    "MissingTopicError",
    "publish_jsonl",
    "publish_lines",
]
