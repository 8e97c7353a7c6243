"""psana's file formats: text arrays, geometry files, DCS files (:mod:`~dcsync.legacy.dcs`, read
by :mod:`~dcsync.legacy.dcsread`, written by :mod:`~dcsync.legacy.dcswrite`), and the one place a
user's file becomes a constant (:mod:`~dcsync.legacy.inputs`).

Layer 2 of docs/architecture.md, beside store and transport (which it does not import).
"""
