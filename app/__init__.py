"""Sidan: the 四单 (点单·派单·接单·评单) order-dispatch service."""
