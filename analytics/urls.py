"""Analytics pages for PIs and data managers."""

app_name = "analytics"
urlpatterns: list = []
