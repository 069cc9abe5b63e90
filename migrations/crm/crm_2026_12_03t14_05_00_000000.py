from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T14:05:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Clinician emails unique among active clinicians"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)

    # A deactivated record may keep an address that an active colleague now uses. Piccolo has no
    # partial indexes; SQLite and PostgreSQL share this syntax.
    async def create_index():
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX clinician_email_active_unique ON clinician (email) "
            "WHERE active AND email IS NOT NULL"
        )

    async def drop_index():
        await engine_finder().run_ddl("DROP INDEX IF EXISTS clinician_email_active_unique")

    manager.add_raw(create_index)
    manager.add_raw_backwards(drop_index)
    return manager
