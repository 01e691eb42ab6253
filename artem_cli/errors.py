"""The one exception type for failures a user can cause (bad file, bad option, no memory)."""


class ArtemError(Exception):
    """A user-facing failure: the CLI prints ``Error: <message>`` and exits with status 1."""
