"""Counters and sets over HTTP, as an application would use them with
Python's `requests`: a shopping cart built by clients adding through
different nodes at once, then a remove with the context of a read, and a
counter incremented concurrently through every node, and an increment
retried with its operation id through every node (it counts once). No
client merges anything: the store does.

Usage: datatypes.py PORT0 PORT1 PORT2

Prints one line per failure and exits 1 if anything failed.
"""

import sys
import threading

import requests

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL:", message)


def url(port, path):
    return f"http://127.0.0.1:{port}{path}"


def post(port, path, op, **params):
    return requests.post(url(port, path), json=op, params=params, timeout=30)


def main(ports):
    # The buckets' types, set once through any node.
    for bucket, datatype in [("carts", "set"), ("visits", "counter")]:
        response = requests.put(url(ports[0], f"/buckets/{bucket}/props"), json={"datatype": datatype}, timeout=30)
        check(response.status_code == 204, f"set {bucket} datatype: {response.status_code} {response.text}")

    # Two shoppers add to one cart through two nodes at the same time.
    items = {port: [f"item-{port}-{index}" for index in range(20)] for port in ports[:2]}
    errors = []

    def shop(port):
        for item in items[port]:
            response = post(port, "/buckets/carts/datatypes/alice", {"add": item})
            if response.status_code != 204:
                errors.append(f"add {item} via {port}: {response.status_code} {response.text}")

    threads = [threading.Thread(target=shop, args=(port,)) for port in ports[:2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check(not errors, f"adds refused: {errors[:3]}")

    cart = requests.get(url(ports[2], "/buckets/carts/datatypes/alice"), timeout=30).json()
    expected = sorted(items[ports[0]] + items[ports[1]])
    check(cart.get("type") == "set", f"cart type: {cart}")
    check(sorted(cart.get("value", [])) == expected, f"cart misses items: {len(cart.get('value', []))} of {len(expected)}")

    # A remove with the context of that read, through yet another node.
    removed = items[ports[0]][0]
    response = post(ports[1], "/buckets/carts/datatypes/alice", {"remove": removed, "context": cart["context"]}, returnbody="true")
    check(response.status_code == 200, f"remove: {response.status_code} {response.text}")
    check(removed not in response.json().get("value", []), "returnbody still holds the removed item")
    after = requests.get(url(ports[0], "/buckets/carts/datatypes/alice"), timeout=30).json()
    check(sorted(after["value"]) == sorted(set(expected) - {removed}), "a read after the remove disagrees")

    # What a client gets wrong is refused with the reason, and stores nothing.
    for op, status in [
        ({"remove": "never-added", "context": after["context"]}, 412),
        ({"increment": 1}, 409),
        ({"add": "x", "increment": 1}, 400),
        ({"remove": "x", "context": "not-a-context"}, 400),
        ({}, 400),
    ]:
        response = post(ports[0], "/buckets/carts/datatypes/alice", op)
        check(response.status_code == status, f"{op}: {response.status_code} (wanted {status}) {response.text}")
        check("error" in response.json(), f"{op}: no error message: {response.text}")
    unchanged = requests.get(url(ports[2], "/buckets/carts/datatypes/alice"), timeout=30).json()
    check(sorted(unchanged["value"]) == sorted(after["value"]), "a refused operation changed the cart")
    response = requests.put(url(ports[0], "/buckets/carts/keys/alice"), data=b"overwrite", timeout=30)
    check(response.status_code == 409, f"an opaque PUT over a set: {response.status_code}")

    # Increments through every node at once all count.
    def visit(port):
        for _ in range(25):
            response = post(port, "/buckets/visits/datatypes/home", {"increment": 2})
            if response.status_code != 204:
                errors.append(f"increment via {port}: {response.status_code} {response.text}")

    threads = [threading.Thread(target=visit, args=(port,)) for port in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check(not errors, f"increments refused: {errors[:3]}")
    post(ports[1], "/buckets/visits/datatypes/home", {"increment": -10})
    for port in ports:
        value = requests.get(url(port, "/buckets/visits/datatypes/home"), timeout=30).json()
        check(value == {"type": "counter", "value": 3 * 25 * 2 - 10}, f"counter via {port}: {value}")

    # An increment retried with its operation id, through every node, counts
    # once; the same amount without an id counts each time.
    for port in ports:
        response = post(port, "/buckets/visits/datatypes/paid", {"increment": 7, "id": "order-1041"})
        check(response.status_code == 204, f"retried increment via {port}: {response.status_code} {response.text}")
    post(ports[0], "/buckets/visits/datatypes/paid", {"increment": 7})
    for port in ports:
        value = requests.get(url(port, "/buckets/visits/datatypes/paid"), timeout=30).json()
        check(value["value"] == 14, f"an id counts once, an increment without one counts: via {port}: {value}")
    bad_id = post(ports[0], "/buckets/visits/datatypes/paid", {"increment": 1, "id": ""})
    check(bad_id.status_code == 400 and "id" in bad_id.text, f"empty id: {bad_id.status_code} {bad_id.text}")

    # A bucket that holds plain values cannot become a data-type bucket; one
    # whose keys were all deleted can.
    plain = requests.put(url(ports[0], "/buckets/legacy/keys/k1"), data=b"old", timeout=30)
    check(plain.status_code == 204, f"plain write: {plain.status_code} {plain.text}")
    refused = requests.put(url(ports[1], "/buckets/legacy/props"), json={"datatype": "counter"}, timeout=30)
    check(
        refused.status_code == 409 and "already holds keys" in refused.text,
        f"datatype on a bucket with keys: {refused.status_code} {refused.text}",
    )
    kept = requests.get(url(ports[2], "/buckets/legacy/props"), timeout=30).json()
    check(kept.get("datatype") == "none", f"props unchanged after the refusal: {kept}")
    requests.put(url(ports[0], "/buckets/emptied/keys/k1"), data=b"x", timeout=30)
    read = requests.get(url(ports[0], "/buckets/emptied/keys/k1"), timeout=30)
    context = {"X-Dynamo-Context": read.headers["X-Dynamo-Context"]}
    # w=3: every replica holds the tombstone before the props change asks them.
    requests.delete(url(ports[0], "/buckets/emptied/keys/k1"), headers=context, params={"w": 3}, timeout=30)
    emptied = requests.put(url(ports[2], "/buckets/emptied/props"), json={"datatype": "set"}, timeout=30)
    check(emptied.status_code == 204, f"datatype on a bucket of deleted keys: {emptied.status_code} {emptied.text}")

    maps(ports)

    missing = requests.get(url(ports[0], "/buckets/visits/datatypes/nobody"), timeout=30)
    check(missing.status_code == 404, f"absent counter: {missing.status_code}")

    print(f"{len(failures)} failures")
    return 1 if failures else 0


def maps(ports):
    """A user profile as a map: fields of every type, updated through two
    nodes at once, then removed with a read's context while another node
    increments concurrently (reset-remove: only the unseen increment stays)."""
    path = "/buckets/profiles/datatypes/ann"
    response = requests.put(url(ports[0], "/buckets/profiles/props"), json={"datatype": "map"}, timeout=30)
    check(response.status_code == 204, f"map datatype: {response.status_code} {response.text}")
    first = post(ports[0], path, {"update": {"name_register": "Ann", "visits_counter": 1, "tags_set": {"add": "a"}}})
    check(first.status_code == 204, f"map update: {first.status_code} {first.text}")
    errors = []

    def update(port, op):
        response = post(port, path, op)
        if response.status_code != 204:
            errors.append(f"update via {port}: {response.status_code} {response.text}")

    threads = [
        threading.Thread(target=update, args=(ports[0], {"update": {"tags_set": {"add": "b"}, "visits_counter": 2}})),
        threading.Thread(
            target=update,
            args=(ports[1], {"update": {"tags_set": {"add": "c"}, "vip_flag": "enable",
                                        "home_map": {"update": {"city_register": "Oslo"}}}}),
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check(not errors, f"map updates refused: {errors}")
    read = requests.get(url(ports[2], path), timeout=30).json()
    expected = {"name_register": "Ann", "visits_counter": 3, "tags_set": ["a", "b", "c"], "vip_flag": True,
                "home_map": {"city_register": "Oslo"}}
    check(read.get("type") == "map" and read.get("value") == expected, f"merged map: {read}")

    # Remove the counter with what this read saw, while another node adds 5
    # the read never saw: the counter survives holding just the 5.
    post(ports[1], path, {"update": {"visits_counter": 5}})
    removed = post(ports[0], path, {"remove": ["visits_counter", "vip_flag"], "context": read["context"]},
                   returnbody="true")
    check(removed.status_code == 200, f"remove: {removed.status_code} {removed.text}")
    value = requests.get(url(ports[2], path), timeout=30).json()["value"]
    check(value.get("visits_counter") == 5 and "vip_flag" not in value, f"reset-remove: {value}")

    refusals = [
        ({"update": {"name": "x"}}, 400, "<name>_<type>"),
        ({"update": {"vip_flag": "maybe"}}, 400, "enable"),
        ({"increment": 1}, 409, "datatype map"),
        ({"remove": ["never_register"], "context": read["context"]}, 412, "never"),
    ]
    for op, status, text in refusals:
        response = post(ports[2], path, op)
        check(response.status_code == status and text in response.text,
              f"{op}: {response.status_code} {response.text}")


if __name__ == "__main__":
    sys.exit(main([int(port) for port in sys.argv[1:4]]))
