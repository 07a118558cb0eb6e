"""The personalisation engine: a sandboxed Jinja2 for marketeer-authored templates (see environment.py)."""
