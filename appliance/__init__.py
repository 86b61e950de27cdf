"""Callbox appliance services: SIP, call control, IVR, ACD, web admin, store."""

__version__ = "0.1.0"
