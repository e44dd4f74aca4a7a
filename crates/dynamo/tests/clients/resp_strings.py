"""The Redis protocol front end as redis-py (PyPI's `redis`) uses it, with
the library's defaults: strings through three nodes, pipelines, RESP3, and
the errors a client must get (unknown commands, wrong arity, databases
other than 0, a bad expiry), the connection surviving each.

Usage: resp_strings.py PORT0 PORT1 PORT2

Prints one line per failure and exits 1 if anything failed.
"""

import sys

import redis

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL:", message)


def refused(call, expected):
    try:
        call()
    except redis.ResponseError as error:
        check(expected in str(error), f"error {error!r} should mention {expected!r}")
        return
    check(False, f"expected an error mentioning {expected!r}")


def main(ports):
    nodes = [redis.Redis(host="127.0.0.1", port=port) for port in ports]
    a, b, c = nodes
    check(a.ping() is True, "PING")
    check(a.echo("hi") == b"hi", "ECHO")

    # Written through one node, read through the others.
    check(a.set("greeting", "hello") is True, "SET")
    check(b.get("greeting") == b"hello" and c.get("greeting") == b"hello", "GET through the other nodes")
    check(c.get("missing") is None, "GET of a missing key is None")
    check(b.set("greeting", "hi", nx=True) is None, "SET NX on a present key does nothing")
    check(c.set("fresh", "1", nx=True) is True, "SET NX on an absent key")
    check(a.set("absent", "x", xx=True) is None, "SET XX on an absent key does nothing")
    check(a.set("greeting", "hey", get=True) == b"hello", "SET GET returns the old value")
    check(b.setnx("greeting", "no") is False and b.setnx("once", "yes") is True, "SETNX")
    check(a.mset({"m1": "one", "m2": "two"}) is True, "MSET")
    check(c.mget("m1", "missing", "m2") == [b"one", None, b"two"], "MGET")
    check(b.strlen("m1") == 3 and b.strlen("missing") == 0, "STRLEN")
    check(c.type("m1") == b"string" and c.type("missing") == b"none", "TYPE")
    check(a.exists("m1", "m2", "missing", "m1") == 3, "EXISTS counts each key named")
    check(b.getdel("m1") == b"one" and c.get("m1") is None, "GETDEL")
    check(c.delete("m2", "missing") == 1 and a.get("m2") is None, "DEL counts what it removed")
    check(a.unlink("once") == 1, "UNLINK")
    value = bytes(range(256)) * 40
    check(a.set("binary", value) and b.get("binary") == value, "binary values round-trip")

    # A pipeline of 200 commands, answered in order.
    pipe = b.pipeline(transaction=False)
    for index in range(100):
        pipe.set(f"p{index}", index)
    for index in range(100):
        pipe.get(f"p{index}")
    replies = pipe.execute()
    check(replies[:100] == [True] * 100, "pipelined SETs")
    check(replies[100:] == [str(index).encode() for index in range(100)], "pipelined GETs in order")

    # RESP3, negotiated by the library with HELLO 3.
    resp3 = redis.Redis(host="127.0.0.1", port=ports[2], protocol=3)
    check(resp3.get("greeting") == b"hey" and resp3.get("missing") is None, "GET over RESP3")
    check(resp3.config_get("databases") == {"databases": "1"}, f"CONFIG GET over RESP3: {resp3.config_get('databases')}")
    check(a.config_get("save") == {"save": ""}, "CONFIG GET over RESP2")
    check(a.client_setname("app") is True and a.client_getname() == "app", "CLIENT SETNAME/GETNAME")
    check("redis_version" in a.info("server"), "INFO server")

    # Errors, each leaving the connection usable.
    refused(lambda: a.execute_command("MULTI"), "unknown command 'MULTI'")
    refused(lambda: a.execute_command("GET"), "wrong number of arguments for 'get' command")
    refused(lambda: a.execute_command("SELECT", "1"), "DB index is out of range")
    refused(lambda: a.set("k", "v", ex=-10), "invalid expire time")
    check(a.ping() is True, "the connection survives the errors")
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main([int(port) for port in sys.argv[1:4]]))
