"""Python models (`backend: python`): Triton's python-backend `model.py` and Conveyor's own
model form, each instance in a worker process of its own (see `backend.py`)."""
