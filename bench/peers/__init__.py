"""Side-by-side Python peers: the same sessions by the most direct Faust code and by Quix Streams.

:func:`side_by_side` (:mod:`.phase`) runs the benchmark's ``peers`` phase; the peers are
programs of their own (:mod:`.faust_app`, :mod:`.quix_app`) that share the session rule
(:mod:`.rule`) and how they report back (:mod:`.protocol`).
"""
