"""``python -m dcsync``: the CLI, for hosts where the console script is not on PATH."""

from dcsync.cli.main import run

run()
