"""Configuration values: limits and profiles, mounts, the network policy. Plain
validated values; they import nothing above ``_errors`` and ``_units``.
"""
