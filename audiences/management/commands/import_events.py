from audiences.management.commands._import_base import ImportCommand


class Command(ImportCommand):
    help = "Import events (purchases, page views, calls...) from a CSV or XLSX file; identities find the contact."
    kind = "events"
