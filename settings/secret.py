"""The token signing key of the embedded default: generated once, kept in the data directory."""

from __future__ import annotations

import os
import secrets

from settings.table import Settings


def load_or_create_secret(settings: Settings) -> str:
    """The signing key for our tokens.

    Production sets ``SECRET_KEY`` (all instances must share it). The embedded default
    keeps a generated key in the data directory so tokens survive restarts.
    """
    settings.check_secret_key()
    if settings.secret_key:
        return settings.secret_key
    path = settings.generated_secret_path
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
