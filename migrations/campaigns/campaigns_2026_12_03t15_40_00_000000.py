from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T15:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Unique enrollments, occurrences and suppressions; the dispatch index"

INDEXES = {
    "enrollment_campaign_clinician_unique": "CREATE UNIQUE INDEX enrollment_campaign_clinician_unique ON enrollment (campaign, clinician)",
    "occurrence_campaign_time_unique": "CREATE UNIQUE INDEX occurrence_campaign_time_unique ON occurrence (campaign, scheduled_for)",
    "suppression_email_scope_unique": "CREATE UNIQUE INDEX suppression_email_scope_unique ON suppression (email, scope)",
    "send_state_due": "CREATE INDEX send_state_due ON send (state, due_at)",
    "send_clinician_sent": "CREATE INDEX send_clinician_sent ON send (clinician, sent_at)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="campaigns", description=DESCRIPTION)

    async def create_indexes():
        for statement in INDEXES.values():
            await engine_finder().run_ddl(statement)

    async def drop_indexes():
        for name in INDEXES:
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)
    return manager
