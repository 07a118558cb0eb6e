"""Who is asking, remembered for a short while in each process.

DRF's token authentication reads the token and its user on every request (0.8 ms here, a third
of a bare endpoint's time), and Django's ModelBackend reads a user's permissions in two more
queries on every request that checks one (the API's permission classes, the admin). A callcenter
agent asks many times an hour, so a token's user (`CachedTokenAuthentication`, for the API) and a
user's permissions (`RememberingModelBackend`, for everything that asks `user.has_perm`) are kept
in this process for settings.API_AUTH_CACHE_SECONDS (60 by default; 0 keeps nothing):

- a token deleted, a user deactivated or changed, or a role or its permissions changed, in this
  process is forgotten at once (the receivers below); in another process it applies within those
  seconds;
- an unknown or refused token is never remembered: each such request reads the database.

Each request gets its own copy of the remembered user, so what a request caches on it (Django's
permission cache) does not outlive the request.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Hashable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_delete, post_save
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from dialoog.caching import LRU

MISSING = object()


class Remembered:
    """Values kept in this process for settings.API_AUTH_CACHE_SECONDS, at most `size` of them
    (the least recently used dropped first)."""

    def __init__(self, size: int = 10_000) -> None:
        self._values = LRU(size)

    def get(self, key: Hashable) -> Any:
        found = self._values.get(key)
        if found is None or found[0] <= time.monotonic():
            return MISSING
        return found[1]

    def put(self, key: Hashable, value: Any) -> None:
        seconds = float(getattr(settings, "API_AUTH_CACHE_SECONDS", 60))
        if seconds > 0:
            self._values.put(key, (time.monotonic() + seconds, value))

    def clear(self) -> None:
        self._values.clear()


_tokens = Remembered()  # token key -> (user, token)
_permissions = Remembered()  # user id -> the set of all the user's permissions


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token <key>`, with the token's user remembered (see the module)."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        found = _tokens.get(key)
        if found is MISSING:
            found = super().authenticate_credentials(key)  # refuses unknown keys and inactive users
            _tokens.put(key, found)
        user, token = found
        return copy.copy(user), token


class RememberingModelBackend(ModelBackend):
    """Django's ModelBackend, with each active user's permissions remembered (see the module)."""

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        found = _permissions.get(user_obj.pk)
        if found is MISSING:
            found = frozenset(super().get_all_permissions(user_obj))
            _permissions.put(user_obj.pk, found)
        return set(found)  # the caller's own, as ModelBackend's


def forget_all(**kwargs: Any) -> None:
    """Forget every remembered token and permission of this process (a user, token, group or
    permission changed: rare enough to start afresh)."""
    _tokens.clear()
    _permissions.clear()


def connect_forgetting() -> None:
    """Called once from the project's AppConfig.ready."""
    user_model = get_user_model()
    for model in (Token, user_model, Group):
        post_save.connect(forget_all, sender=model, dispatch_uid=f"dialoog.forget.save.{model._meta.label}")
        post_delete.connect(forget_all, sender=model, dispatch_uid=f"dialoog.forget.delete.{model._meta.label}")
    for through in (
        user_model.groups.through,
        user_model.user_permissions.through,
        Group.permissions.through,
    ):
        m2m_changed.connect(forget_all, sender=through, dispatch_uid=f"dialoog.forget.m2m.{through._meta.label}")
