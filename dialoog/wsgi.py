import os

from django.core.wsgi import get_wsgi_application

from dialoog.collector import collector_tune

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dialoog.settings.base")

application = get_wsgi_application()
collector_tune()
