"""The choo daemon: owns the history database, ingests events over a Unix
socket, and serves the web UI."""

__version__ = "0.1.0"
