"""Queue names as constants; docker-compose.yml is checked against them by a test."""

from __future__ import annotations


class QueueNames:
    DEFAULT = "default"
    MAINTENANCE = "maintenance"  # the reconciler; consumed by a small worker of its own so jobs cannot starve it
    WEBHOOKS = "webhooks"  # webhook deliveries: a slow receiver must not hold the workers of the default queue

    @classmethod
    def all(cls) -> list[str]:
        return [cls.DEFAULT, cls.WEBHOOKS, cls.MAINTENANCE]
