"""The daemon's web side: a read-only JSON API, server-sent events, the static UI."""
