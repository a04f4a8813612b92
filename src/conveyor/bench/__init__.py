"""`conveyor bench`: load generation and measurement for any serving system.

The pieces: targets (what is called), load patterns (when), the runner (which keeps
intended-send, actual-send and completion times for every request), and results
(HdrHistograms, JSON).
"""
