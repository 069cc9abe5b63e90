from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "campaigns"

APP_CONFIG = AppConfig(
    app_name="campaigns",
    migrations_folder_path=str(MIGRATIONS),
    table_classes=table_finder(modules=["campaigns.tables"], exclude_imported=True),
    migration_dependencies=["crm.piccolo_app"],
    commands=[],
)
