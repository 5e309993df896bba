"""The y-websocket wire: the protocol of the npm ``y-websocket`` client, beside y-socket.io."""
