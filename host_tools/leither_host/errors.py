# The one error the CLI turns into `leither: message` and exit code 1.
"""Host-side errors."""

from leither.errors import LeitherError


class CliError(LeitherError):
    """A failure to report to the user in one line."""
