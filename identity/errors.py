"""Errors raised while establishing who a caller is."""


class InvalidToken(Exception):
    """A bearer token (ours or Firebase's) could not be accepted.

    ``reason`` is a short human message safe to show to the client; ``code`` is the machine
    code the edges answer with (REST ``code``, the socket refusal's ``data.code``).
    """

    code = "invalid_token"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ExpiredToken(InvalidToken):
    """A token that was valid and has expired: the client should refresh it, not sign out."""

    code = "token_expired"
