"""Transports: byte channels to a ``dcsync serve --stdio`` peer (see :mod:`dcsync.transport.base`)."""
