"""What the store hands upward: frozen, slotted records with typed ids and `StrEnum` statuses.

One module per noun (`order`, `payment`, `device`, `delivery`, ...); ids live in `ids`. Records
are pure data: no I/O, no JSON. Services pass them along; only `bridge.web` renders them.
"""
