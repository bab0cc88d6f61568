"""The choo daemon: owns the history database, ingests events over a Unix
socket, and serves the web UI.

Two processes: the trio process (sessions, the writer, the live hub, the
web app from ``choo_web``) and the database process (``dbproc``), the only
one that writes the file. It imports ``protocol`` and ``choo_web``, never
``choo``; its files import each other without a cycle
(``tests/test_imports.py``).
"""

__version__ = "0.1.0"
