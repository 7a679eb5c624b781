"""Sending: campaigns released on their schedule and sent through each account's channel
within its rate and the guard (D1–D16)."""
