"""The y-socket.io wire: python-socketio serving the npm ``y-socket.io`` client's events,
one namespace per document (``namespaces``), on the document service's rooms."""
