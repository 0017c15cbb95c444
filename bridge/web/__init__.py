"""The HTTP and websocket edge (aiohttp only): parse, authenticate, call a service, render."""
