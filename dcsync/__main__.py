"""``python -m dcsync``: the CLI, for hosts where the console script is not on PATH."""

from dcsync.entry import run

run()
