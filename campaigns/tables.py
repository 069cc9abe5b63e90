"""Piccolo tables of the campaigns app (campaigns, sends and workshops arrive in later issues)."""
