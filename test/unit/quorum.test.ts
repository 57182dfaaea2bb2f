import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  agreedDigestQuorum,
  countQuorum,
  type DigestVote,
  joinViewQuorum,
  matchingDigestQuorum,
  quorums,
} from "../../src/bft/quorum.ts";
import type { ReplicaId } from "../../src/bft/types.ts";

function digest(byte: number): Uint8Array {
  return new Uint8Array(32).fill(byte);
}

const A = digest(0xaa);
const B = digest(0xbb);

function votes(entries: [ReplicaId, Uint8Array][]): Map<ReplicaId, DigestVote> {
  return new Map(entries.map(([r, d]) => [r, { digest: d }]));
}

describe("quorums", () => {
  for (const f of [1, 2, 3]) {
    it(`hybrid, f = ${f}: n = 2f+1, every quorum f+1, no prepare phase`, () => {
      assert.deepEqual(quorums("hybrid", f), {
        n: 2 * f + 1,
        f,
        commit: f + 1,
        prepare: 0,
        checkpoint: f + 1,
        viewChange: f + 1,
        join: f + 1,
      });
    });

    it(`pbft, f = ${f}: n = 3f+1, prepare 2f, commit/checkpoint/viewChange 2f+1, join f+1`, () => {
      assert.deepEqual(quorums("pbft", f), {
        n: 3 * f + 1,
        f,
        commit: 2 * f + 1,
        prepare: 2 * f,
        checkpoint: 2 * f + 1,
        viewChange: 2 * f + 1,
        join: f + 1,
      });
    });
  }

  it("gives the concrete sizes for f = 1", () => {
    const h = quorums("hybrid", 1);
    assert.deepEqual([h.n, h.commit, h.checkpoint, h.viewChange, h.join], [3, 2, 2, 2, 2]);
    const p = quorums("pbft", 1);
    assert.deepEqual([p.n, p.prepare, p.commit, p.checkpoint, p.viewChange, p.join], [4, 2, 3, 3, 3, 2]);
  });

  for (const mode of ["hybrid", "pbft"] as const) {
    it(`${mode}: any two commit quorums intersect in a correct replica, and join includes one`, () => {
      for (const f of [1, 2, 3, 4, 5]) {
        const q = quorums(mode, f);
        // Two quorums of size c among n replicas share at least 2c - n; hybrid needs 1 (trusted counters
        // prevent equivocation), PBFT needs f + 1 (one of them correct).
        const overlap = 2 * q.commit - q.n;
        assert.ok(overlap >= (mode === "hybrid" ? 1 : f + 1), `f=${f}`);
        assert.ok(2 * q.viewChange - q.n >= (mode === "hybrid" ? 1 : f + 1), `f=${f}`);
        assert.ok(q.join >= f + 1, "q.join >= f + 1");
        assert.ok(q.commit <= q.n - f, "liveness with f silent replicas");
        assert.ok(q.viewChange <= q.n - f, "q.viewChange <= q.n - f");
        assert.ok(q.checkpoint <= q.n - f, "q.checkpoint <= q.n - f");
      }
    });
  }
});

describe("matchingDigestQuorum", () => {
  it("is not done below the threshold", () => {
    const q = matchingDigestQuorum(3);
    const r = q({ digest: A }, votes([]));
    assert.deepEqual(r, { value: undefined, done: false });
    assert.equal(q({ digest: A }, votes([[0, A]])).done, false);
    assert.equal(
      q(
        { digest: A },
        votes([
          [0, A],
          [1, A],
        ]),
      ).done,
      false,
    );
  });

  it("is done at the threshold, with the voters sorted", () => {
    const q = matchingDigestQuorum(3);
    const r = q(
      { digest: A },
      votes([
        [4, A],
        [1, A],
        [2, A],
      ]),
    );
    assert.equal(r.done, true);
    assert.deepEqual(r.value, [1, 2, 4]);
  });

  it("returns every matching voter above the threshold", () => {
    const q = matchingDigestQuorum(2);
    const r = q(
      { digest: A },
      votes([
        [3, A],
        [0, A],
        [2, A],
      ]),
    );
    assert.deepEqual(r, { value: [0, 2, 3], done: true });
  });

  it("ignores non-matching votes", () => {
    const q = matchingDigestQuorum(2);
    const replies = votes([
      [0, A],
      [1, B],
      [2, B],
      [3, digest(0xcc)],
    ]);
    assert.equal(q({ digest: A }, replies).done, false);
    assert.deepEqual(q({ digest: B }, replies), { value: [1, 2], done: true });
    replies.set(5, { digest: A });
    assert.deepEqual(q({ digest: A }, replies), { value: [0, 5], done: true });
  });

  it("compares digests by content, not identity or prefix", () => {
    const q = matchingDigestQuorum(2);
    assert.deepEqual(
      q(
        { digest: A },
        votes([
          [0, digest(0xaa)],
          [1, A.slice()],
        ]),
      ),
      { value: [0, 1], done: true },
    );
    assert.equal(
      q(
        { digest: A },
        votes([
          [0, A],
          [1, A.subarray(0, 31)],
        ]),
      ).done,
      false,
    );
  });

  it("requires the include replica's matching vote", () => {
    const q = matchingDigestQuorum(2);
    const without = votes([
      [1, A],
      [2, A],
    ]);
    assert.equal(q({ digest: A, include: 0 }, without).done, false);
    const mismatched = votes([
      [0, B],
      [1, A],
      [2, A],
    ]);
    assert.equal(q({ digest: A, include: 0 }, mismatched).done, false);
    const withLeader = votes([
      [0, A],
      [2, A],
    ]);
    assert.deepEqual(q({ digest: A, include: 0 }, withLeader), { value: [0, 2], done: true });
    assert.deepEqual(q({ digest: A }, without), { value: [1, 2], done: true });
  });

  it("does not modify the replies", () => {
    const q = matchingDigestQuorum(1);
    const replies = votes([
      [2, A],
      [1, A],
    ]);
    q({ digest: A }, replies);
    assert.deepEqual([...replies.keys()], [2, 1]);
  });
});

describe("agreedDigestQuorum", () => {
  it("is not done while no digest has enough votes", () => {
    const q = agreedDigestQuorum(2);
    assert.deepEqual(q(undefined, votes([])), { value: undefined, done: false });
    assert.equal(
      q(
        undefined,
        votes([
          [0, A],
          [1, B],
          [2, digest(1)],
        ]),
      ).done,
      false,
    );
  });

  it("picks the digest with enough votes among conflicting ones", () => {
    const q = agreedDigestQuorum(3);
    const r = q(
      undefined,
      votes([
        [0, A],
        [1, B],
        [6, B],
        [2, A],
        [3, B],
        [4, digest(1)],
      ]),
    );
    assert.equal(r.done, true);
    assert.ok(r.value, "r.value");
    assert.deepEqual(r.value.digest, B);
    assert.deepEqual(r.value.voters, [1, 3, 6]);
  });

  it("is done exactly at the threshold", () => {
    const q = agreedDigestQuorum(2);
    const replies = votes([
      [3, A],
      [1, B],
    ]);
    assert.equal(q(undefined, replies).done, false);
    replies.set(0, { digest: A.slice() });
    const r = q(undefined, replies);
    assert.equal(r.done, true);
    assert.deepEqual(r.value?.digest, A);
    assert.deepEqual(r.value?.voters, [0, 3]);
  });
});

describe("countQuorum", () => {
  it("is not done below the threshold", () => {
    const q = countQuorum<string>(3);
    assert.deepEqual(q(undefined, new Map()), { value: undefined, done: false });
    assert.equal(
      q(
        undefined,
        new Map([
          [0, "a"],
          [1, "b"],
        ]),
      ).done,
      false,
    );
  });

  it("is done at the threshold, with replies sorted by replica, whatever they say", () => {
    const q = countQuorum<string>(2);
    const r = q(
      undefined,
      new Map([
        [5, "x"],
        [2, "y"],
      ]),
    );
    assert.deepEqual(r, {
      value: [
        [2, "y"],
        [5, "x"],
      ],
      done: true,
    });
  });

  it("picks exactly `required` replies, lowest replica ids first", () => {
    const q = countQuorum<number>(2);
    const r = q(
      undefined,
      new Map([
        [3, 30],
        [0, 0],
        [7, 70],
        [1, 10],
      ]),
    );
    assert.deepEqual(r.value, [
      [0, 0],
      [1, 10],
    ]);
  });
});

describe("joinViewQuorum", () => {
  const views = (entries: [ReplicaId, number][]) => new Map(entries);

  it("is not done while fewer than `required` replicas want a higher view", () => {
    const q = joinViewQuorum(2);
    assert.deepEqual(q({ view: 3 }, views([])), { value: undefined, done: false });
    assert.equal(q({ view: 3 }, views([[0, 9]])).done, false);
  });

  it("ignores views not above the current one", () => {
    const q = joinViewQuorum(2);
    const replies = views([
      [0, 3],
      [1, 2],
      [2, 5],
    ]);
    assert.equal(q({ view: 3 }, replies).done, false);
    replies.set(3, 4);
    assert.deepEqual(q({ view: 3 }, replies), { value: 4, done: true });
  });

  it("returns the highest view that `required` replicas want at least", () => {
    const q = joinViewQuorum(2);
    assert.deepEqual(
      q(
        { view: 1 },
        views([
          [0, 4],
          [1, 7],
          [2, 5],
        ]),
      ),
      { value: 5, done: true },
    );
    const q3 = joinViewQuorum(3);
    assert.deepEqual(
      q3(
        { view: 0 },
        views([
          [0, 4],
          [1, 7],
          [2, 5],
          [3, 2],
        ]),
      ),
      { value: 4, done: true },
    );
  });

  it("does not let a single replica push the view arbitrarily far", () => {
    const q = joinViewQuorum(2);
    const r = q(
      { view: 0 },
      views([
        [0, 1_000_000],
        [1, 1],
        [2, 1],
      ]),
    );
    assert.deepEqual(r, { value: 1, done: true });
  });

  it("returns the common view when the replicas agree", () => {
    const q = joinViewQuorum(2);
    assert.deepEqual(
      q(
        { view: 2 },
        views([
          [0, 3],
          [1, 3],
        ]),
      ),
      { value: 3, done: true },
    );
  });
});
