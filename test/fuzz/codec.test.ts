// Fuzzes the wire codec with random and mutated frames (FUZZ_FRAMES, default 120,000): decoding never
// throws, every failure is a typed CodecError, every frame that decodes re-encodes to the same bytes and
// passes the shape check step() applies (src/bft/shape.ts), and every decoded message can be stepped
// into a live replica of either mode without crashing it.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Message, messageShapeProblem } from "../../src/bft/index.ts";
import { CodecError, decodeMessage, encodeMessage, WIRE_VERSION } from "../../src/transport/codec.ts";
import { Prng } from "../sim/prng.ts";
import { Cluster } from "../unit/harness.ts";
import { collectCorpus } from "./corpus.ts";

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 120_000);

function mutate(rng: Prng, seeds: readonly Uint8Array[]): Uint8Array {
  const base = rng.pick(seeds);
  const b = base.slice();
  switch (rng.int(0, 7)) {
    case 0: {
      // flip bits
      for (let k = rng.int(1, 4); k > 0 && b.length > 0; k--) {
        const i = rng.int(0, b.length - 1);
        b[i] = (b[i] as number) ^ (1 << rng.int(0, 7));
      }
      return b;
    }
    case 1: {
      // random bytes somewhere
      for (let k = rng.int(1, 8); k > 0 && b.length > 0; k--) b[rng.int(0, b.length - 1)] = rng.int(0, 255);
      return b;
    }
    case 2:
      return b.subarray(0, rng.int(0, b.length));
    case 3:
      return Uint8Array.of(...b, ...rng.bytes(rng.int(1, 64)));
    case 4: {
      // corrupt what may be a length or count: a large or off-by-one u32
      if (b.length < 6) return b;
      const i = rng.int(2, b.length - 4);
      const v = rng.chance(0.5) ? 0xffff_ffff - rng.int(0, 16) : rng.int(0, 70_000);
      b[i] = v >>> 24;
      b[i + 1] = (v >>> 16) & 0xff;
      b[i + 2] = (v >>> 8) & 0xff;
      b[i + 3] = v & 0xff;
      return b;
    }
    case 5: {
      // splice two frames
      const other = rng.pick(seeds);
      return Uint8Array.of(
        ...b.subarray(0, rng.int(0, b.length)),
        ...other.subarray(rng.int(0, other.length)),
      );
    }
    case 6:
      // valid header, random body
      return Uint8Array.of(WIRE_VERSION, rng.int(0, 16), ...rng.bytes(rng.int(0, 200)));
    default:
      return rng.bytes(rng.int(0, 300));
  }
}

describe("wire codec fuzz", () => {
  it(`${FRAMES} random and mutated frames: no throw, typed errors, canonical re-encoding, replicas survive`, () => {
    const corpus = collectCorpus(30);
    const seeds: Uint8Array[] = [];
    for (const msgs of corpus.values()) for (const m of msgs) seeds.push(encodeMessage(m));
    for (const msgs of corpus.values())
      for (const m of msgs) assert.equal(messageShapeProblem(m), null, `a real ${m.type} is well-formed`);
    const rng = new Prng(20261121);
    const hybrid = new Cluster({ mode: "hybrid" });
    const pbft = new Cluster({ mode: "pbft" });
    // Give both clusters some history so that views, windows and checkpoints are not all at zero.
    for (let k = 0; k < 6; k++) {
      hybrid.commitRequest();
      pbft.commitRequest();
    }
    const errors = new Map<string, number>();
    let decoded = 0;
    for (let n = 0; n < FRAMES; n++) {
      const frame = mutate(rng, seeds);
      let res: ReturnType<typeof decodeMessage>;
      try {
        res = decodeMessage(frame);
      } catch (err) {
        assert.fail(`decode threw on frame ${n} (${Buffer.from(frame).toString("hex")}): ${String(err)}`);
      }
      if (!res.ok) {
        assert.ok(res.error instanceof CodecError, "res.error instanceof CodecError");
        errors.set(res.error.code, (errors.get(res.error.code) ?? 0) + 1);
        continue;
      }
      decoded++;
      assert.deepEqual(encodeMessage(res.msg), frame, `frame ${n} decoded but does not re-encode to itself`);
      const msg: Message = res.msg;
      // What the codec decodes is what step() takes as well-formed (src/bft/shape.ts): the two agree.
      assert.equal(messageShapeProblem(msg), null, `frame ${n} decoded to a message of the wrong shape`);
      const target = msg.type.startsWith("p-") ? pbft : hybrid;
      const from = rng.int(1, target.n - 1);
      // A replica may drop the message; it must never throw (an AssertionFailed would be a bug).
      target.r(0).step(from, msg);
      target.r(0).ready();
    }
    console.log(
      `# fuzz: ${FRAMES} frames, ${decoded} decoded and stepped, errors ${JSON.stringify(Object.fromEntries(errors))}`,
    );
    assert.ok(decoded > 0 && errors.size >= 4, "the mutations should exercise both outcomes");
    // Certificates from the corpus are not this cluster's: nothing can convict a counter, and a halted
    // replica would drop the rest of the frames unexamined.
    assert.equal(hybrid.r(0).halted, null, "the hybrid replica kept processing frames");
  });
});
