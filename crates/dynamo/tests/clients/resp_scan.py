"""SCAN through the Redis front end, as redis-py (PyPI's `redis`) uses it
with its defaults (`scan_iter`, and `scan` by hand): every live key once per
full pass whatever COUNT, none deleted or expired, MATCH and TYPE filters,
and a clear error for a cursor this node never gave out.

Usage: resp_scan.py PORT0 PORT1 PORT2

Prints one line per failure and exits 1 if anything failed.
"""

import sys
import time

import redis

from checks import check, failures, refused


def main():
    ports = [int(port) for port in sys.argv[1:4]]
    clients = [redis.Redis(host="127.0.0.1", port=port) for port in ports]
    a, b, c = clients
    live = set()
    for n in range(300):
        writer = clients[n % 3]
        if n % 3 == 0:
            writer.set(f"str:{n}", "v")
            live.add(f"str:{n}")
        elif n % 3 == 1:
            writer.sadd(f"set:{n}", "m")
            live.add(f"set:{n}")
        else:
            writer.hset(f"hash:{n}", "f", "v")
            live.add(f"hash:{n}")
    for n in range(0, 300, 10):
        key = next(k for k in (f"str:{n}", f"set:{n}", f"hash:{n}") if k in live)
        check(a.delete(key) == 1, f"DEL {key}")
        live.discard(key)
    b.set("gone:soon", "v", px=300)
    time.sleep(0.5)

    for count in (None, 7, 1000):
        seen = [key.decode() for key in (a.scan_iter(count=count) if count else a.scan_iter())]
        check(len(seen) == len(set(seen)), f"scan_iter(count={count}) returned a key twice")
        check(set(seen) == live, f"scan_iter(count={count}): missing {sorted(live - set(seen))[:5]}, "
              f"extra {sorted(set(seen) - live)[:5]}")

    hashes = {key.decode() for key in b.scan_iter(match="hash:*", count=50)}
    check(hashes == {k for k in live if k.startswith("hash:")}, "MATCH hash:*")
    sets = {key.decode() for key in c.scan_iter(_type="set", count=50)}
    check(sets == {k for k in live if k.startswith("set:")}, "TYPE set")

    # By hand: the cursor is an integer, 0 starts and ends the pass.
    cursor, total = 0, 0
    while True:
        cursor, keys = c.scan(cursor=cursor, count=40)
        check(isinstance(cursor, int), "the cursor parses as an integer")
        check(len(keys) <= 40, "a page holds at most COUNT keys")
        total += len(keys)
        if cursor == 0:
            break
    check(total == len(live), f"a pass by hand saw {total} keys, not {len(live)}")
    refused(lambda: a.scan(cursor=123456789), "start again with SCAN 0")
    refused(lambda: a.execute_command("SCAN", "abc"), "invalid cursor")
    refused(lambda: a.execute_command("SCAN", "0", "COUNT", "0"), "syntax error")
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
