"""Dialoog: the back-office for data-driven marketing execution."""

from .celery import app as celery_app

__all__ = ("celery_app",)
