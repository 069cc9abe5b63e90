"""RSVPs and attendance on a clinician's timeline: each workshop answer (as it stands now: one RSVP
per workshop and clinician, at the time it was given) and each check-in. A walk-in (recorded at
check-in, never answered) shows only as attended."""

from __future__ import annotations

from campaigns.rsvp_links import schedule_text
from campaigns.tables import Rsvp
from crm.activities import TimelineEntry

ANSWER_TITLES = {"yes": "RSVP: Yes to {}", "maybe": "RSVP: Maybe to {}", "no": "RSVP: No to {}",
                 "waitlist": "On the waitlist for {}"}
SOURCES = {"link": "RSVP link", "calendar": "Calendar reply"}
# Recorded as a Yes at check-in by staff: the clinician never answered, "Attended" says it all.
NOT_ANSWERS = ("walk_in",)


async def entries(clinician_id: int, limit: int) -> list[TimelineEntry]:
    columns = (
        Rsvp.answer, Rsvp.answered_at, Rsvp.source, Rsvp.attended, Rsvp.checked_in_at,
        Rsvp.workshop.title.as_alias("title"), Rsvp.workshop.starts_at.as_alias("starts_at"),
        Rsvp.workshop.ends_at.as_alias("ends_at"), Rsvp.workshop.time_zone.as_alias("time_zone"),
        Rsvp.workshop.status.as_alias("status"),
    )
    answers = await Rsvp.select(*columns).where(
        Rsvp.clinician == clinician_id, Rsvp.source.not_in(list(NOT_ANSWERS))
    ).order_by(Rsvp.answered_at, ascending=False).order_by(Rsvp.id, ascending=False).limit(limit).run()
    result = []
    for row in answers:
        when = schedule_text(row["starts_at"], row["ends_at"], row["time_zone"])
        result.append(TimelineEntry(
            at=row["answered_at"], kind="workshop-rsvp",
            title=ANSWER_TITLES.get(row["answer"], "RSVP: {}").format(row["title"]),
            detail=when + (" · workshop cancelled" if row["status"] == "cancelled" else ""),
            by=SOURCES.get(row["source"], "Liaison"),
        ))
    attended = await Rsvp.select(*columns).where(
        Rsvp.clinician == clinician_id, Rsvp.attended == True  # noqa: E712
    ).order_by(Rsvp.checked_in_at, ascending=False).limit(limit).run()
    for row in attended:
        result.append(TimelineEntry(
            at=row["checked_in_at"] or row["starts_at"], kind="workshop-attendance",
            title=f"Attended {row['title']}",
            detail=schedule_text(row["starts_at"], row["ends_at"], row["time_zone"]), by="Check-in",
        ))
    return result
