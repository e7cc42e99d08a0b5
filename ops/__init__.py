"""What an operator runs against any deployment: the ``pulse`` CLI (``cli.py``), topics as code
(``topics.py`` with the spec in ``deploy/kafka/topics.yaml``), consumer lag and read-only queries.

The CLI starts the production processes (``pulse worker``, ``sink``, ``collect``, ``migrate``,
``topics``) straight from their stages; the development commands (``kafka``, ``up``, ``down``,
``status``, ``top``, ``demo``, ``soak``, ``bench``) import :mod:`devstack` and :mod:`bench`
only when called. Nothing else here imports them.
"""
