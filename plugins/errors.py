"""The one error type users see: a single line naming the problem and the fix."""

import click


class PurifyError(click.ClickException):
    """Bad input or an impossible request. The CLI prints `Error: <message>` and exits with 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
