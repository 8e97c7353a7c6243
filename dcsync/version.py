"""The package version, in one place (importable without importing the whole package)."""

__version__ = "0.1.0"
