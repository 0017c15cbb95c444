"""`paybridge bench`: a benchmark shipped with the product (like pgbench).

`server` runs the bridge under test in its own process and reads its CPU and memory from /proc;
`devices` builds simulated phones from the real agent code; `driver` generates the load and
measures; `cli` parses the flags and prints one JSON line. See docs/performance.md.
"""
