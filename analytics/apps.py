from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self) -> None:
        from analytics import tasks  # noqa: F401  registers its senders in analytics.queue
