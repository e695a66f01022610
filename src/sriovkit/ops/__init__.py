"""Orchestration: receives its seams as arguments; rollback lives here."""
