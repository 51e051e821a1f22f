"""The core's own tables: ``rate_limits`` (counters of :class:`~proxy_core.db.StoreRateLimiter`)."""
