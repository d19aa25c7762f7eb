"""The sans-IO protocol core of aiodicom.

Nothing in this package performs I/O, reads a clock, starts a thread or touches the
filesystem: it turns bytes into events and events into bytes (in the manner of h11 and
h2). The anyio layer in :mod:`aiodicom.server` and :mod:`aiodicom.client` drives it.
"""
