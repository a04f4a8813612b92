"""Peer servers and model glue the lab runs inside each peer's own virtualenv.

These files are executed (or loaded) by the peer's interpreter, never imported by
Conveyor: they may import only what that virtualenv installs (see `lab/peers.py`).
"""
