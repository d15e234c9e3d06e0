"""The `hpsweep` command. Only this package writes to the terminal."""

from hpsweep.cli.main import main

__all__ = ["main"]
