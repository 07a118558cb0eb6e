"""A saved version never changes: PostgreSQL refuses an UPDATE of a block or template version,
so what a delivery records as "rendered from version N" stays true whatever the code does."""

from django.db import migrations

TABLES = ["content_contentblockversion", "content_templateversion"]

# One update is let through: deleting a user clears `created_by` (on_delete=SET_NULL) and
# nothing else.
CREATE_FUNCTION = """
CREATE FUNCTION content_version_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.created_by_id IS NULL AND (to_jsonb(NEW) - 'created_by_id') = (to_jsonb(OLD) - 'created_by_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'A saved % cannot be changed; save a new version instead.', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
"""


def trigger(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION content_version_immutable();"
    )


class Migration(migrations.Migration):
    dependencies = [("content", "0001_initial")]

    operations = [
        migrations.RunSQL(CREATE_FUNCTION, "DROP FUNCTION content_version_immutable();"),
        *(migrations.RunSQL(trigger(table), f"DROP TRIGGER {table}_immutable ON {table};") for table in TABLES),
    ]
