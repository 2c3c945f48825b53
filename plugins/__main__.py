"""`python -m purify_backdoor` is `purify`."""

from purify_backdoor.cli import cli

cli(prog_name="purify")
