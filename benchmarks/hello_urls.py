"""The project's URLs plus `GET /bench/hello/`, the bare authenticated endpoint HTTP benchmarks measure beside.

Served by benchmarks/hello_wsgi.py, which makes this module the ROOT_URLCONF; the project's code is
left as it is.
"""

from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from dialoog.urls import urlpatterns as project_urlpatterns


class HelloView(APIView):
    """Authenticated the project's way (REST_FRAMEWORK's classes: Token, then session), then
    `{"hello": "world"}`: what every API request costs before its own work."""

    permission_classes = [IsAuthenticated]
    schema = None  # not part of the API's documentation

    def get(self, request):
        return Response({"hello": "world"})


urlpatterns = [
    path("bench/hello/", HelloView.as_view(), name="bench-hello"),
    *project_urlpatterns,
]
