"""The document domain: what a loop or a song is, apart from how it is served or stored.

A leaf package: it imports nothing of ``rest``, ``realtime`` or ``storage`` (nor aiohttp,
socketio or SQLAlchemy), so every layer may depend on it.
"""
