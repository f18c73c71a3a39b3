"""The one exception type the CLI turns into ``iotpipe: message`` and exit status 1."""


class UserError(Exception):
    """Something the user can fix; the message says what went wrong and what to do."""
