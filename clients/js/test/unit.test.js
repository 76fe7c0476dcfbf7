// The client's pure parts: no server needed.
import { test } from "node:test";
import assert from "node:assert/strict";

import { RECONNECT, RpcError, backoffDelay } from "../src/client.js";

test("the reconnect schedule doubles from 0.5 s up to 30 s, fully jittered", () => {
  const ceilings = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, RECONNECT, () => 1));
  assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  assert.equal(
    backoffDelay(3, RECONNECT, () => 0),
    0,
  );
  assert.equal(
    backoffDelay(3, RECONNECT, () => 0.25),
    1000,
  );
  assert.equal(
    backoffDelay(3, { ...RECONNECT, jitter: "none" }, () => 0),
    4000,
  );
});

test("an error answer becomes an RpcError with the server's name, data and retry flag", () => {
  const error = RpcError.fromWire({
    code: 4011,
    message: "wrong or expired code",
    data: { error: "invalid_code", retryable: false, reason: "wrong_code", attemptsLeft: 4 },
  });
  assert.ok(error instanceof Error);
  assert.equal(error.code, 4011);
  assert.equal(error.name, "invalid_code");
  assert.equal(error.reason, "wrong_code");
  assert.equal(error.data.attemptsLeft, 4);
  assert.equal(error.retryable, false);
  assert.equal(
    RpcError.fromWire({ code: 5003, message: "down", data: { error: "unavailable", retryable: true } })
      .retryable,
    true,
  );
});
