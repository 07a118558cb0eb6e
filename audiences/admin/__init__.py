"""The audiences admin, one module per subject: contacts, segments, imports."""

from audiences.admin import contacts, imports, predictions, products, segments  # noqa: F401 - registers the model admins
