"""The agent console's pages, under /agent/."""

from django.urls import path

from campaigns.offers import console

app_name = "agent"

urlpatterns = [
    path("", console.console, name="console"),
    path("customers/<uuid:contact_key>/", console.customer, name="customer"),
    path("customers/<uuid:contact_key>/responses/", console.respond, name="respond"),
    path("call-list/next/", console.next_call, name="next"),
    path("call-list/<int:item_id>/outcome/", console.call_outcome, name="call-outcome"),
]
