"""ipctool: a plugin-based command-line swiss-army knife for Linux IPC.

Plugin authors import from :mod:`ipctool.api` only; tests use :mod:`ipctool.testing`.
"""

__version__ = "0.1.0"
