import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CircuitBreaker } from '../../src/sinks/webhook/circuit-breaker.js';

test('circuit breaker opens after consecutive failures', () => {
  const breaker = new CircuitBreaker(3, 1000);
  assert.equal(breaker.recordFailure(0), false);
  assert.equal(breaker.recordFailure(0), false);
  assert.equal(breaker.tryAcquire(0), 0);
  assert.equal(breaker.recordFailure(10), true);
  assert.equal(breaker.state(10), 'open');
  assert.equal(breaker.tryAcquire(510), 500);
});

test('circuit breaker success resets the failure count', () => {
  const breaker = new CircuitBreaker(2, 1000);
  breaker.recordFailure(0);
  breaker.recordSuccess();
  assert.equal(breaker.recordFailure(0), false);
  assert.equal(breaker.state(0), 'closed');
});

test('circuit breaker lets one probe through after the cool-down', () => {
  const breaker = new CircuitBreaker(1, 1000);
  breaker.recordFailure(0);
  assert.equal(breaker.tryAcquire(1000), 0, 'probe allowed');
  assert.ok(breaker.tryAcquire(1000) > 0, 'second attempt waits for the probe');
  breaker.recordSuccess();
  assert.equal(breaker.state(1000), 'closed');
  assert.equal(breaker.tryAcquire(1000), 0);
});

test('circuit breaker reopens when the probe fails', () => {
  const breaker = new CircuitBreaker(5, 1000);
  for (let i = 0; i < 5; i++) breaker.recordFailure(0);
  assert.equal(breaker.tryAcquire(1500), 0);
  assert.equal(breaker.recordFailure(1500), true);
  assert.equal(breaker.state(2000), 'open');
  assert.equal(breaker.tryAcquire(2000), 500);
});
