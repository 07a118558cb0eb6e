"""Insights that enrich the customer picture: what a contact is likely to want next."""
