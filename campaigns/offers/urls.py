"""The agent console's pages, under /agent/."""

from django.urls import path  # noqa: F401 - the console's views are added here

app_name = "agent"

urlpatterns: list = []
