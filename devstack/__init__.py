"""The local development stack: the Kafka broker from Maven Central jars, ``pulse up``/``down``,
``pulse status``/``top``, the demo and the soak test. Not part of a deployment: production
processes never start through it (see :mod:`ops.cli`).
"""
