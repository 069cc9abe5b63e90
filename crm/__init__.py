"""Referring clinicians, practices, specialties, segments, liaison activity, users and roles."""
