"""State shared by requests: the limiter and the spend store, in memory or in Redis.

``backend.open_backend`` picks the pair from the config at start-up.
"""
