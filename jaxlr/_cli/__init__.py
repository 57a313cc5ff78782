"""The ``jaxlr`` command (see main.py); importing it does not start JAX."""

from jaxlr._cli.commands import main

__all__ = ["main"]
