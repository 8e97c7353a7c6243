"""The ``dcsync`` command line: a thin typer layer over the Python API (see ``docs/cli.md``).

One module per command group; :mod:`dcsync.cli.main` assembles them and is the one place that
turns errors into messages and exit codes.
"""
