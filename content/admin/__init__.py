"""The content admin, the marketeer's workplace for the Design layer: sender profiles, content
blocks, and messages with their channel templates (editor, checks, history, preview, test send)."""

from content.admin import blocks, senders, templates  # noqa: F401 - registers the model admins
