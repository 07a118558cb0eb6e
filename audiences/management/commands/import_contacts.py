from audiences.management.commands._import_base import ImportCommand


class Command(ImportCommand):
    help = "Import contacts (identities, fields, attributes, consents) from a CSV or XLSX file."
    kind = "contacts"
