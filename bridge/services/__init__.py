"""Business operations: pure core decisions + store calls, each in one transaction."""
