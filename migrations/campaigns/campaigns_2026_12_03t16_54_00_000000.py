from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T16:54:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "One RSVP per clinician and workshop"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="campaigns", description=DESCRIPTION)

    async def create_index():
        await engine_finder().run_ddl("CREATE UNIQUE INDEX rsvp_workshop_clinician_unique ON rsvp (workshop, clinician)")

    async def drop_index():
        await engine_finder().run_ddl("DROP INDEX IF EXISTS rsvp_workshop_clinician_unique")

    manager.add_raw(create_index)
    manager.add_raw_backwards(drop_index)
    return manager
