"""What runs on a clock rather than on a request: beat's loops (housekeeping.py) for due tasks and
schedules (scheduler.py), the recovery sweep (recovery.py) and retention (retention.py), and a
worker's heartbeat (presence.py)."""
