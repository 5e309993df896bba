"""Errors raised while establishing who a caller is."""


class InvalidToken(Exception):
    """A bearer token (ours or Firebase's) could not be accepted.

    ``reason`` is a short human message safe to show to the client.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
