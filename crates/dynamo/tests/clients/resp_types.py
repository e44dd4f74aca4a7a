"""Counters, sets and hashes through the Redis front end, as redis-py (PyPI's
`redis`) uses them with its defaults, across three nodes: the INCR family,
SADD and friends, HSET and friends, a key's single type (WRONGTYPE), SET
and DEL replacing any type, and the same replies over RESP3.

Usage: resp_types.py PORT0 PORT1 PORT2

Prints one line per failure and exits 1 if anything failed.
"""

import sys

import redis

from checks import check, failures, refused


def counters(a, b, c):
    check(a.incr("hits") == 1, "INCR of an absent key starts at 0")
    check(b.incr("hits") == 2 and c.incrby("hits", 10) == 12, "INCR and INCRBY through other nodes")
    check(a.decr("hits") == 11 and b.decrby("hits", 5) == 6, "DECR and DECRBY")
    check(c.get("hits") == b"6", "GET of a counter is its value as a string")
    check(a.set("n", "41") and b.incr("n") == 42, "INCR of a string holding an integer")
    check(c.set("n", "7") and a.incr("n") == 8, "SET resets the increments")
    check(a.type("n") == b"string" and b.strlen("n") == 1, "a counter is a string to TYPE and STRLEN")
    a.set("text", "hello")
    refused(lambda: b.incr("text"), "value is not an integer")
    refused(lambda: b.incrby("n", "1.5"), "value is not an integer")
    check(c.get("text") == b"hello", "a refused INCR changes nothing")
    check(a.getdel("hits") == b"6" and b.get("hits") is None, "GETDEL of a counter")
    check(c.incr("hits") == 1, "a deleted counter starts again at 0")


def sets(a, b, c):
    check(a.sadd("tags", "red", "green") == 2, "SADD counts the new members")
    check(b.sadd("tags", "green", "blue") == 1, "SADD does not count a member already there")
    check(c.smembers("tags") == {b"red", b"green", b"blue"}, "SMEMBERS through another node")
    check(a.scard("tags") == 3, "SCARD")
    check(b.sismember("tags", "red") is True or b.sismember("tags", "red") == 1, "SISMEMBER present")
    check(not c.sismember("tags", "pink"), "SISMEMBER absent")
    check(a.smismember("tags", ["red", "pink", "blue"]) == [1, 0, 1], f"SMISMEMBER {a.smismember('tags', ['red', 'pink', 'blue'])}")
    check(b.srem("tags", "red", "pink") == 1, "SREM counts what it removed")
    check(c.smembers("tags") == {b"green", b"blue"}, "SREM through another node")
    check(a.type("tags") == b"set", "TYPE of a set")
    check(a.smembers("nothing") == set() and a.scard("nothing") == 0, "an absent set is empty")
    check(b.srem("tags", "green", "blue") == 2 and c.exists("tags") == 0, "the last member removed deletes the key")


def hashes(a, b, c):
    check(a.hset("user", mapping={"name": "Ann", "city": "Oslo"}) == 2, "HSET counts new fields")
    check(b.hset("user", "city", "Bergen") == 0, "HSET of an existing field counts 0")
    check(c.hget("user", "city") == b"Bergen" and c.hget("user", "nope") is None, "HGET")
    check(a.hmget("user", ["name", "nope"]) == [b"Ann", None], "HMGET")
    check(b.hgetall("user") == {b"name": b"Ann", b"city": b"Bergen"}, "HGETALL")
    check(c.hexists("user", "name") and not c.hexists("user", "age"), "HEXISTS")
    check(a.hlen("user") == 2, "HLEN")
    check(sorted(b.hkeys("user")) == [b"city", b"name"], "HKEYS")
    check(sorted(c.hvals("user")) == [b"Ann", b"Bergen"], "HVALS")
    check(a.hincrby("user", "visits", 3) == 3 and b.hincrby("user", "visits", -1) == 2, "HINCRBY")
    check(c.hget("user", "visits") == b"2", "HGET of an incremented field")
    refused(lambda: a.hincrby("user", "name", 1), "hash value is not an integer")
    check(a.hsetnx("user", "name", "Bob") == 0 and a.hsetnx("user", "age", "30") == 1, "HSETNX")
    check(b.hdel("user", "age", "nope") == 1, "HDEL counts what it removed")
    check(a.type("user") == b"hash", "TYPE of a hash")
    check(c.hgetall("absent") == {}, "an absent hash is empty")


def one_type_per_key(a, b, c):
    a.set("s", "text")
    a.sadd("members", "x")
    a.hset("h", "f", "v")
    for call, name in [
        (lambda: b.sadd("s", "x"), "SADD on a string"),
        (lambda: b.hset("s", "f", "v"), "HSET on a string"),
        (lambda: b.smembers("h"), "SMEMBERS on a hash"),
        (lambda: b.get("members"), "GET on a set"),
        (lambda: b.incr("h"), "INCR on a hash"),
        (lambda: b.hget("members", "f"), "HGET on a set"),
        (lambda: b.strlen("h"), "STRLEN on a hash"),
    ]:
        try:
            call()
            check(False, f"{name} should be WRONGTYPE")
        except redis.ResponseError as error:
            check(str(error).startswith("WRONGTYPE"), f"{name}: {error}")
    check(c.mget("s", "members", "h") == [b"text", None, None], "MGET reads a non-string as nil")
    check(c.set("members", "now a string") and a.get("members") == b"now a string", "SET replaces a set")
    check(c.delete("h", "s", "missing") == 2 and b.exists("h", "s") == 0, "DEL removes a hash and a string")
    check(a.sadd("h", "x") == 1, "a deleted key takes any type")


def resp3(port):
    client = redis.Redis(host="127.0.0.1", port=port, protocol=3)
    client.delete("r3set", "r3hash")
    client.sadd("r3set", "a", "b")
    client.hset("r3hash", mapping={"k": "v"})
    check(client.smembers("r3set") == {b"a", b"b"}, "SMEMBERS over RESP3 (a set reply)")
    check(client.hgetall("r3hash") == {b"k": b"v"}, "HGETALL over RESP3 (a map reply)")
    check(client.incr("r3count") >= 1, "INCR over RESP3")


def main(ports):
    a, b, c = [redis.Redis(host="127.0.0.1", port=port) for port in ports]
    counters(a, b, c)
    sets(a, b, c)
    hashes(a, b, c)
    one_type_per_key(a, b, c)
    resp3(ports[2])
    pipe = a.pipeline(transaction=False)
    for _ in range(50):
        pipe.incr("piped")
    check(pipe.execute() == list(range(1, 51)), "pipelined INCRs answer in order")
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main([int(port) for port in sys.argv[1:4]]))
