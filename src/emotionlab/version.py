"""The package version, in a module that imports nothing, so any module can read it without an import cycle."""

__version__ = "0.1.0"
