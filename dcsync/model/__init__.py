"""The values dcsync is made of and their rules, with no I/O: objects (payloads, trees, commits and
their canonical encoding), ids, names, times, fields, limits, the wire encoding and who is running.

Layer 1 of docs/architecture.md: imports only :mod:`dcsync.errors` and :mod:`dcsync.version`.
"""
