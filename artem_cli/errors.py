"""The one exception type for failures a user can cause (bad file, bad option, no memory)."""


class ArtemError(Exception):
    """A user-facing failure: the CLI prints ``Error: <message>`` and exits with status 1."""


class NoSpace(ArtemError):
    """A write the disk (or the user's quota) had no room for: every later write there fails alike
    until space is freed."""
