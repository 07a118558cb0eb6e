"""The delivery layer's public addresses: what customers' messages link to and providers call back."""

from django.urls import path

from campaigns.tracking import views

app_name = "campaigns"

urlpatterns = [
    path("t/o/<str:token>.gif", views.open_pixel, name="open_pixel"),
    path("t/c/<int:delivery_id>/", views.click_redirect, name="click"),
    path("m/<str:token>/unsubscribe/", views.unsubscribe, name="unsubscribe"),
    path("m/<str:token>/preferences/", views.preferences, name="preferences"),
    path("api/v1/delivery-status/", views.DeliveryStatusView.as_view(), name="delivery_status"),
]
