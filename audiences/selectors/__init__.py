"""Reads of the audiences app that more than one caller needs, one module per subject."""
