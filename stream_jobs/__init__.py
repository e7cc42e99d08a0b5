"""Stream jobs: Faust agents over the events topic.

The logic they run (validation of a record, duplicate detection, later sessions, funnels
and churn windows) lives in modules that import neither Faust nor Kafka, so it can be
tested alone; ``app.py`` and the ``*_agent.py`` modules wire it to Faust.
"""
