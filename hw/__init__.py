"""Telephony hardware and OS integration: E1 cards, network, systemd."""
