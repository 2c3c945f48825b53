"""`python -m plugins` is `purify`."""

from plugins.cli import cli

cli(prog_name="purify")
