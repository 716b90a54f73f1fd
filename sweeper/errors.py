"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class SweeperError(Exception):
    """Bad input from the user (a file, a name, a value, a path, a server)."""
