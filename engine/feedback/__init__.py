"""Feedback: what comes back after sending — opens, clicks, unsubscribes, provider webhooks,
bounces and complaints (D14, D17–D19)."""
