from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "crm"

APP_CONFIG = AppConfig(
    app_name="crm",
    migrations_folder_path=str(MIGRATIONS),
    table_classes=table_finder(modules=["crm.tables"], exclude_imported=True),
    migration_dependencies=[],
    commands=[],
)
