from django.db import migrations


def create_roles(apps, schema_editor):
    from dialoog.roles import roles_sync

    roles_sync(apps=apps)


class Migration(migrations.Migration):
    """Creates the groups Marketeer, Analyst, Callcenter agent and Administrator with the
    permissions their roles give (dialoog/roles.py). Later models are added to the roles
    after every migrate."""

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("audiences", "0001_initial"),
        ("goals", "0001_initial"),
        ("campaigns", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
