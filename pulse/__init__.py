"""Customer Pulse's shared base: the event contract, its wire format and the settings.

Producers, stream jobs and sinks all import from here; nothing here imports them, so the
dependency arrows point one way (``deploy`` -> stages -> ``pulse``).
"""
