"""Telling readers of a change as it happens: announcements between processes (changes.py,
over Redis pub/sub or, embedded, datagrams.py) and the event streams fed by them (streams.py)."""
