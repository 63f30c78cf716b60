"""Governance: who may do what, proven by signatures (identities, keys, roles).

Each module imports what it needs lazily: the ``cryptography`` package is loaded only
when a key is made, loaded or checked.
"""
