"""Pure logic of the bridge: standard library only (plus `cryptography` for signatures), no I/O.

Time, randomness and secrets are arguments. `tests/test_layering.py` enforces this.
"""
