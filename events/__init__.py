"""Events out: one transactional outbox of domain events, fanned out to in-app notifications
and to operators' signed webhooks (docs/events.md).

- :mod:`events.catalogue`: every event kind, defined once (who it notifies, an example body);
- :mod:`events.outbox`: writes an event in the caller's transaction; content edits coalesced;
- :mod:`events.dispatcher`: claims written events and fans them out, on every instance;
- :mod:`events.notifications`: the inbox (grouping, visibility, per-user settings);
- :mod:`events.webhooks`, :mod:`events.signing`, :mod:`events.webhook_urls`: delivery with
  retries, Standard Webhooks signatures, which URLs may be called;
- :mod:`events.inbox_sockets`: the live push of notifications over the bus and Socket.IO.
"""
