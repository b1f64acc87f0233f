#!/usr/bin/env python3
"""What one MongoDB-wire server charges for the writes a push to B recipients can be made of,
measured side by side in one run (issue 12's ceiling on the scaled-out path).

    python3 mongo-write-costs.py [URL] [B] [ROUNDS]    (needs pymongo)

Per round, one after the other, each on its own collection:
- insert_many: B message documents (the raw bound herald-bench reports);
- counters, conditional upsert: B `{_id, n: expected}` `$inc` upserts in one bulk_write
  (how store-mongo takes ids);
- counters, plain update: the same without upsert;
- counters, one update_many: `{_id: {$in: [...]}}` `$inc`, one statement over B documents;
- acks: B `$max` updates of a per-client watermark in one bulk_write;
- bucket: B upserts that take the id AND store the message in the counter document
  (`$inc` + `$push` with `$slice`), the one-write-per-recipient alternative.
Prints the median milliseconds of each (first 5 rounds dropped) and each one's ratio to
insert_many."""
import statistics
import sys
import time

from pymongo import MongoClient, UpdateOne

url = sys.argv[1] if len(sys.argv) > 1 else "mongodb://127.0.0.1:27017/?directConnection=true"
B = int(sys.argv[2]) if len(sys.argv) > 2 else 100
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 60
db = MongoClient(url)["herald_write_costs"]
for name in db.list_collection_names():
    db[name].drop()
db.messages.create_index([("c", 1), ("i", 1)], unique=True)
clients = [f"u{i}" for i in range(B)]
data = {"t": 1764000000000, "s": "x" * 64}
for name in ("plain", "many"):
    db[name].insert_many([{"_id": c, "n": 0} for c in clients])


def message(c, k):
    return {"c": c, "i": k, "f": "bench", "ch": ["t"], "d": data, "t": k, "a": 0}


WRITES = {
    "insert_many": lambda k: db.messages.insert_many([message(c, k) for c in clients], ordered=False),
    "counters, conditional upsert": lambda k: db.upsert.bulk_write(
        [UpdateOne({"_id": c, "n": k - 1}, {"$inc": {"n": 1}}, upsert=True) for c in clients], ordered=False),
    "counters, plain update": lambda k: db.plain.bulk_write(
        [UpdateOne({"_id": c, "n": k - 1}, {"$inc": {"n": 1}}) for c in clients], ordered=False),
    "counters, one update_many": lambda k: db.many.update_many(
        {"_id": {"$in": clients}, "n": k - 1}, {"$inc": {"n": 1}}),
    "acks ($max watermark)": lambda k: db.upsert.bulk_write(
        [UpdateOne({"_id": c}, {"$max": {"m.0": k}}) for c in clients], ordered=False),
    "bucket (id and message in one upsert)": lambda k: db.bucket.bulk_write(
        [UpdateOne({"_id": c, "n": k - 1},
                   {"$inc": {"n": 1}, "$push": {"q": {"$each": [message(c, k)], "$slice": -64}}},
                   upsert=True) for c in clients], ordered=False),
}
times = {name: [] for name in WRITES}
for k in range(1, ROUNDS + 1):
    for name, write in WRITES.items():
        t = time.perf_counter()
        write(k)
        times[name].append(time.perf_counter() - t)
base = statistics.median(times["insert_many"][5:])
for name, v in times.items():
    m = statistics.median(v[5:])
    print(f"{name}: {m * 1000:.1f} ms ({m / base:.2f} x insert_many)")
