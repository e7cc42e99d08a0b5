"""Running Customer Pulse: the local Kafka broker, the background stack and the ``pulse`` CLI.

This package sits on top: it imports the producers, stream jobs and sinks; none of them
imports it.
"""
