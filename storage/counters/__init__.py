"""Rate-limit counters: one small interface, an in-process and a Redis backend (URL picks)."""

from storage.counters.base import Counters, CountersUnavailable, Decision, Quota, open_counters

__all__ = ["Counters", "CountersUnavailable", "Decision", "Quota", "open_counters"]
