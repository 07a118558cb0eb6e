"""Writes and workflows of the audiences app, one module per subject: contacts (identity
resolution, merge, GDPR), consents, events, segments and imports."""
