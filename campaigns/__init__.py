"""Campaigns, cadences, sends and delivery, workshops, attribution (built in later issues)."""
