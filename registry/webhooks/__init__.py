"""Webhooks: subscriptions to what happens in the registry, delivered as signed JSON.

- :mod:`.events` writes a delivery row for every subscription an event concerns, in the
  transaction of the change itself (an outbox: an event is announced if and only if its
  change committed, and a registry that restarts loses none);
- :mod:`.targets` decides which URLs a subscription may point at;
- :mod:`.dispatch` is the thread in every registry process that sends due deliveries,
  retries failed ones with exponential backoff and records each attempt.
"""
