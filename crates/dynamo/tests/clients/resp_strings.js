// The Redis protocol front end as ioredis (npm) uses it, with the library's
// defaults: it connects (ioredis sends INFO and CLIENT SETNAME-like
// commands on its own), writes through one node, reads through another,
// pipelines, and gets errors as rejected promises without losing the
// connection.
//
// Usage: NODE_PATH=<dir with ioredis> node resp_strings.js PORT0 PORT1
// Prints one line per failure and exits 1 if anything failed.

const Redis = require("ioredis");

const failures = [];
function check(condition, message) {
  if (!condition) {
    failures.push(message);
    console.log("FAIL:", message);
  }
}

async function refused(promise, expected) {
  try {
    await promise;
    check(false, `expected an error mentioning ${expected}`);
  } catch (error) {
    check(String(error.message).includes(expected), `error ${error.message} should mention ${expected}`);
  }
}

async function main(ports) {
  const options = { maxRetriesPerRequest: 1, retryStrategy: () => null };
  const a = new Redis(ports[0], "127.0.0.1", options);
  const b = new Redis(ports[1], "127.0.0.1", options);
  check((await a.ping()) === "PONG", "PING");
  check((await a.set("js:greeting", "hello")) === "OK", "SET");
  check((await b.get("js:greeting")) === "hello", "GET through the other node");
  check((await b.get("js:missing")) === null, "GET of a missing key is null");
  check((await a.set("js:greeting", "hi", "NX")) === null, "SET NX on a present key");
  check((await a.mset("js:a", "1", "js:b", "2")) === "OK", "MSET");
  check(JSON.stringify(await b.mget("js:a", "js:nope", "js:b")) === JSON.stringify(["1", null, "2"]), "MGET");
  check((await b.del("js:a", "js:nope")) === 1, "DEL");
  const pipeline = b.pipeline();
  for (let index = 0; index < 50; index++) pipeline.set(`js:p${index}`, String(index));
  for (let index = 0; index < 50; index++) pipeline.get(`js:p${index}`);
  const replies = await pipeline.exec();
  check(replies.every(([error]) => error === null), "pipeline without errors");
  check(replies.slice(50).every(([, value], index) => value === String(index)), "pipelined GETs in order");
  // Counters, sets and hashes.
  check((await a.incr("js:n")) === 1 && (await b.incrby("js:n", 4)) === 5, "INCR and INCRBY");
  check((await b.get("js:n")) === "5", "GET of a counter");
  check((await a.sadd("js:s", "x", "y")) === 2 && (await b.scard("js:s")) === 2, "SADD and SCARD");
  check(JSON.stringify((await b.smembers("js:s")).sort()) === JSON.stringify(["x", "y"]), "SMEMBERS");
  check((await a.hset("js:h", "f", "v", "g", "w")) === 2, "HSET");
  check(JSON.stringify(await b.hgetall("js:h")) === JSON.stringify({ f: "v", g: "w" }), "HGETALL");
  check((await b.hincrby("js:h", "count", 2)) === 2, "HINCRBY");
  // Expiry and SCAN, as ioredis applications use them.
  check((await a.set("js:session", "v", "EX", 100)) === "OK", "SET EX");
  const ttl = await b.ttl("js:session");
  check(ttl >= 98 && ttl <= 100, `TTL after SET EX 100 is ${ttl}`);
  check((await b.pexpire("js:session", 150)) === 1, "PEXPIRE");
  await new Promise((resolve) => setTimeout(resolve, 400));
  check((await a.get("js:session")) === null, "an expired key reads null");
  for (let index = 0; index < 30; index++) await a.set(`js:scan:${index}`, "v");
  const scanned = [];
  await new Promise((resolve, reject) => {
    const stream = b.scanStream({ match: "js:scan:*", count: 7 });
    stream.on("data", (keys) => scanned.push(...keys));
    stream.on("end", resolve);
    stream.on("error", reject);
  });
  check(scanned.length === 30 && new Set(scanned).size === 30, `scanStream saw ${scanned.length} keys, not 30 once each`);
  await refused(a.sadd("js:h", "x"), "WRONGTYPE");
  await refused(a.call("MULTI"), "unknown command 'MULTI'");
  await refused(a.call("GET"), "wrong number of arguments");
  check((await a.ping()) === "PONG", "the connection survives the errors");
  a.disconnect();
  b.disconnect();
  console.log(`${failures.length} failures`);
  return failures.length ? 1 : 0;
}

main(process.argv.slice(2).map(Number)).then(
  (code) => process.exit(code),
  (error) => {
    console.log("FAIL:", error);
    process.exit(1);
  },
);
