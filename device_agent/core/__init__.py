"""Pure logic of the device agent: no I/O, no clocks, no randomness (they are passed in)."""
