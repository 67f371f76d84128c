"""The core of the Python API in one run.

    python examples/python/quickstart.py
"""

import os
import tempfile

import shmq

path = os.path.join(tempfile.mkdtemp(), "orders")
with shmq.Queue.create(path, capacity=1024, max_message_size=256, lease=30.0) as q:
    q.send(b"order 7", timeout=0)
    print("sent in a batch:", q.send_many([b"a", b"b", b"c"]))
    m = q.claim(timeout=1.0)
    print("claimed", m.data, "delivery", m.deliveries)
    m.ack()
    ms = q.claim_many(32, timeout=1.0)
    print("claimed in a batch:", [x.data for x in ms])
    print("acked:", q.ack_many(ms))
    try:
        q.claim(timeout=0)
    except shmq.Empty as e:
        print("nothing left:", e)
    s = q.stats()
    print(f"sent {s['sent']} acked {s['acked']} depth {s['depth']}")
os.unlink(path)
