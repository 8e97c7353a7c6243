"""psana's file formats: text arrays, geometry files, the one place a user's file becomes a
constant (:mod:`~dcsync.legacy.inputs`), psana's run finder (:mod:`~dcsync.legacy.finder`) and
calib directories (:mod:`~dcsync.legacy.calibdir`), and DCS files (:mod:`~dcsync.legacy.dcs`,
read by :mod:`~dcsync.legacy.dcsread`, written by :mod:`~dcsync.legacy.dcswrite`).

Layer 2 of docs/architecture.md, beside store and transport (which it does not import).
"""
