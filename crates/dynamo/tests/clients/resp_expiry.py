"""Key expiry through the Redis front end, as redis-py (PyPI's `redis`) uses
it with its defaults, across three nodes: SET EX/PX/EXAT/PXAT/KEEPTTL,
SETEX, PSETEX, EXPIRE and its options, TTL, PTTL, EXPIRETIME, PERSIST, on
strings, sets and hashes; an expired key is absent on every node, and the
first write after expiry starts it afresh (its old contents do not come
back).

Usage: resp_expiry.py PORT0 PORT1 PORT2

Prints one line per failure and exits 1 if anything failed.
"""

import sys
import time

import redis

from checks import check, failures, refused


def set_options(a, b, c):
    check(a.set("s:ex", "v", ex=100), "SET EX")
    ttl = b.ttl("s:ex")
    check(98 <= ttl <= 100, f"TTL after SET EX 100 is {ttl}")
    check(a.set("s:px", "v", px=100_000) and 98_000 <= c.pttl("s:px") <= 100_000, "SET PX and PTTL")
    at = int(time.time()) + 500
    check(b.set("s:exat", "v", exat=at) and abs(c.expiretime("s:exat") - at) <= 1, "SET EXAT and EXPIRETIME")
    at_ms = int(time.time() * 1000) + 500_000
    check(c.set("s:pxat", "v", pxat=at_ms) and a.pexpiretime("s:pxat") == at_ms, "SET PXAT and PEXPIRETIME")
    check(a.set("s:ex", "w", keepttl=True) and 90 <= b.ttl("s:ex") <= 100, "SET KEEPTTL keeps the expiry")
    check(a.set("s:ex", "x") and c.ttl("s:ex") == -1, "a plain SET clears the expiry")
    check(c.ttl("s:none") == -2 and a.pttl("s:none") == -2, "TTL of an absent key is -2")
    refused(lambda: a.set("s:bad", "v", ex=0), "invalid expire time")
    refused(lambda: a.execute_command("SET", "s:bad", "v", "EX", "ten"), "not an integer")
    refused(lambda: a.execute_command("SET", "s:bad", "v", "EX", "1", "PX", "1"), "syntax error")
    check(b.get("s:bad") is None, "a refused SET stores nothing")
    check(a.setex("s:setex", 100, "v") and 98 <= b.ttl("s:setex") <= 100, "SETEX")
    check(b.psetex("s:psetex", 100_000, "v") and 98_000 <= c.pttl("s:psetex") <= 100_000, "PSETEX")
    refused(lambda: a.setex("s:bad", -1, "v"), "invalid expire time")


def expire_options(a, b, c):
    a.sadd("e:set", "m")
    check(b.expire("e:set", 100) is True and 98 <= c.ttl("e:set") <= 100, "EXPIRE on a set")
    check(a.expire("e:set", 50, nx=True) is False, "EXPIRE NX on a key with an expiry")
    check(a.expire("e:set", 50, gt=True) is False, "EXPIRE GT with an earlier time")
    check(a.expire("e:set", 200, gt=True) is True and b.ttl("e:set") > 150, "EXPIRE GT with a later time")
    check(c.expire("e:set", 60, lt=True) is True and a.ttl("e:set") <= 60, "EXPIRE LT with an earlier time")
    check(b.persist("e:set") is True and c.ttl("e:set") == -1, "PERSIST removes the expiry")
    check(a.persist("e:set") is False, "PERSIST of a key without an expiry")
    check(b.expire("e:set", 100, xx=True) is False, "EXPIRE XX on a key without an expiry")
    check(c.smembers("e:set") == {b"m"}, "the set kept its members through it all")
    check(a.expire("e:absent", 100) is False and b.persist("e:absent") is False, "EXPIRE of an absent key")
    check(a.pexpireat("e:set", int(time.time() * 1000) + 300_000) and 290 <= b.ttl("e:set") <= 300, "PEXPIREAT")
    check(a.expireat("e:set", int(time.time()) + 400) and 390 <= c.ttl("e:set") <= 400, "EXPIREAT")
    check(b.expire("e:set", -1) is True and c.exists("e:set") == 0, "EXPIRE with a past time deletes the key")
    refused(lambda: a.execute_command("EXPIRE", "e:set", "5", "NX", "XX"), "not compatible")
    refused(lambda: a.execute_command("EXPIRE", "e:set", "5", "GT", "LT"), "not compatible")
    refused(lambda: a.execute_command("EXPIRE", "e:set", "5", "SOON"), "Unsupported option")


def expiry_everywhere(a, b, c):
    check(a.set("x:str", "old", px=600), "SET PX 600")
    a.hset("x:hash", mapping={"f": "1", "g": "2"})
    check(b.pexpire("x:hash", 600), "PEXPIRE on a hash")
    a.sadd("x:set", "old")
    check(c.pexpire("x:set", 600), "PEXPIRE on a set")
    check(b.get("x:str") == b"old" and c.hget("x:hash", "f") == b"1", "readable before expiry")
    time.sleep(1.0)
    for client in (a, b, c):
        check(client.get("x:str") is None, "an expired string is absent")
        check(client.exists("x:str", "x:hash", "x:set") == 0, "expired keys do not exist")
        check(client.hgetall("x:hash") == {} and client.smembers("x:set") == set(), "expired hash and set are empty")
        check(client.ttl("x:hash") == -2 and client.type("x:set") == b"none", "TTL and TYPE of an expired key")
    check(a.delete("x:str") == 0, "DEL of an expired key counts 0")
    check(b.set("x:str", "new", nx=True) is True and c.get("x:str") == b"new", "SET NX after expiry succeeds")
    check(c.hset("x:hash", "h", "3") == 1, "HSET after expiry adds a field to a new hash")
    check(a.hgetall("x:hash") == {b"h": b"3"} and b.ttl("x:hash") == -1, "the old fields and expiry are gone")
    check(b.sadd("x:set", "new") == 1 and c.smembers("x:set") == {b"new"}, "the old members are gone")
    check(c.incr("x:counter") == 1 and a.pexpire("x:counter", 400), "a counter with an expiry")
    time.sleep(0.7)
    check(b.incr("x:counter") == 1, "INCR after expiry counts from 0")


def main():
    ports = [int(port) for port in sys.argv[1:4]]
    a, b, c = (redis.Redis(host="127.0.0.1", port=port) for port in ports)
    set_options(a, b, c)
    expire_options(a, b, c)
    expiry_everywhere(a, b, c)
    r3 = redis.Redis(host="127.0.0.1", port=ports[0], protocol=3)
    check(r3.set("r3:k", "v", ex=100) and 98 <= r3.ttl("r3:k") <= 100, "SET EX and TTL over RESP3")
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
