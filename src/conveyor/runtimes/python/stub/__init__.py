"""The worker side of Python models: what runs in each worker process.

Imports only the standard library and numpy, so a model's workers can run under another
interpreter or virtualenv (`parameters: {EXECUTION_ENV_PATH: ...}`). `_boot.py` is the
entry point; `pb_utils` is Triton's `triton_python_backend_utils`; `native` is Conveyor's
own, simpler model form; `wire` is the frame and tensor format both sides share.
"""
