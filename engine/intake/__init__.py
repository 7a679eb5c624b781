"""Intake: sources are polled, stable files collected and imported once (F7–F13, N1–N28)."""
