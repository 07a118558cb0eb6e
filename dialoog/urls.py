from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from audiences.api import ContactViewSet, EventViewSet, MergeViewSet
from campaigns.api import CampaignViewSet
from campaigns.api_exports import AudienceExportViewSet
from campaigns.offers.api import NextBestOffersLookupView, NextBestOffersView, OfferDecisionView, OfferResponsesView
from content.api import BlockViewSet, TemplateViewSet
from dialoog.views import healthz
from goals.api import GoalViewSet

router = DefaultRouter()
router.register("contacts", ContactViewSet, basename="contact")
router.register("merges", MergeViewSet, basename="merge")
router.register("events", EventViewSet, basename="event")
router.register("blocks", BlockViewSet, basename="block")
router.register("templates", TemplateViewSet, basename="template")
router.register("goals", GoalViewSet, basename="goal")
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("audience-exports", AudienceExportViewSet, basename="audience-export")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("agent/", include("campaigns.offers.urls")),
    path("healthz", healthz, name="healthz"),
    path("api/v1/contacts/<str:contact_key>/next-best-offers/", NextBestOffersView.as_view(), name="next-best-offers"),
    path("api/v1/next-best-offers/", NextBestOffersLookupView.as_view(), name="next-best-offers-lookup"),
    path("api/v1/offer-responses/", OfferResponsesView.as_view(), name="offer-responses"),
    path("api/v1/offer-decisions/<int:pk>/", OfferDecisionView.as_view(), name="offer-decision"),
    path("api/v1/", include(router.urls)),
    path("", include("campaigns.urls")),  # tracking, unsubscribe pages, status webhooks
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]
