"""Bounds of one load-test run (a tool that can gate CI must not be able to run away).

Kept apart from the runner so the CLI can show them without importing the client stack.
"""

MAX_ROOMS = 500
MAX_EDITORS = 64  # the server's default clients-per-room limit
MAX_VIEWERS = 64
MAX_SOCKETS = 2000
MAX_RATE = 20.0  # edits/s per editor: plus one cursor move each, under the server's 100 msg/s
MAX_DURATION = 3600.0
