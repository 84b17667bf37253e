"""ipctool's built-in plugins, installed as the package `ipctool_plugins`.

They are found through the `ipctool` entry-point group like any third-party
plugin, and use only `ipctool.api`.
"""
