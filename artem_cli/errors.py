"""The one exception type for failures a user can cause (bad file, bad option, no memory)."""


class ArtemError(Exception):
    """A user-facing failure: the CLI prints ``Error: <message>`` and exits with status 1."""


def first_line(error, limit=300):
    """What another library's exception says, for an ArtemError's message: the first line of its text
    (at most ``limit`` characters), or its type's name where it says nothing."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


class NoSpace(ArtemError):
    """A write the disk (or the user's quota) had no room for: every later write there fails alike
    until space is freed."""
