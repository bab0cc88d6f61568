"""The daemon's web side: a read-only JSON API, server-sent events, the static UI.

It reads through what the daemon passes to ``create_app`` (``sources.py``:
structural types) and imports only ``protocol``, never the daemon.
"""
