"""Distributed load with Locust, Conveyor's results JSON at the end:

    conveyor serve .demo-repo &
    locust -f examples/locustfile.py --headless -u 8 -r 8 -t 20s \
        --host http://127.0.0.1:8000 --conveyor-output result.json

    # or across machines: one master, N workers
    locust -f examples/locustfile.py --master --headless -u 64 -r 16 -t 60s \
        --host http://SERVER:8000 --expect-workers 2 --conveyor-output result.json
    locust -f examples/locustfile.py --worker --master-host MASTER

`conveyor bench --compare` reads the result like any other.
"""

from conveyor.bench.locust_user import ConveyorUser


class Linear(ConveyorUser):
    model = "linear"
    protocol = "v2-binary"
    batch_size = 1
