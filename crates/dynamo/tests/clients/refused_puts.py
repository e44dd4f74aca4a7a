"""PUTs that the node refuses with 413, sent by clients that write their
whole body before they read the answer (http.client, requests).

Usage: refused_puts.py PORT SIZE_BYTES COUNT CLIENT

CLIENT is `http.client` or `requests`. Every PUT must read its 413 and a
JSON body whose `error` names the limit; then every key must read 404
(nothing was stored). Prints one line per failure and a summary; exits 1
if anything failed.
"""

import http.client
import json
import sys


def put_with_http_client(port, path, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("PUT", path, body=body, headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def put_with_requests(port, path, body):
    import requests

    response = requests.put(f"http://127.0.0.1:{port}{path}", data=body, timeout=30)
    return response.status_code, response.content


def status_of_get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def main():
    port, size, count, client = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    put = {"http.client": put_with_http_client, "requests": put_with_requests}[client]
    body = b"x" * size
    failures = 0
    for i in range(count):
        path = f"/buckets/refused/keys/{client}-{size}-{i}"
        try:
            status, answer = put(port, path, body)
            message = json.loads(answer)["error"]
            if status != 413 or "max_value_bytes" not in message:
                raise AssertionError(f"status {status}, body {answer!r}")
            status = status_of_get(port, path)
            if status != 404:
                raise AssertionError(f"the refused value was stored: GET is {status}")
        except Exception as problem:  # every failure is reported, none stops the run
            failures += 1
            print(f"PUT {i} of {size} bytes with {client}: {type(problem).__name__}: {problem}")
    print(f"{count - failures}/{count} PUTs of {size} bytes with {client} read their 413")
    sys.exit(1 if failures else 0)


main()
