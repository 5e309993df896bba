"""``musicplayground loadtest``: simulated editors and viewers against a running server.

``runner`` sets up users and loops over REST and drives the sockets (the Python protocol
client, ``loadtest/client.py``); ``report`` turns what it measured into the JSON report,
the threshold verdict and the PNG plot.
"""
