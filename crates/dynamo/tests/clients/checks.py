"""What the Redis client scripts share: a failure list, `check`, and
`refused` for a call that must answer a Redis error. Each script prints one
line per failed check and exits 1 if any failed.
"""

import redis

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL:", message)


def refused(call, expected):
    try:
        result = call()
    except redis.ResponseError as error:
        check(expected in str(error), f"error {error!r} should mention {expected!r}")
        return
    check(False, f"expected an error mentioning {expected!r}, got {result!r}")
