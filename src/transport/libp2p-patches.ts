// Load-time patches of libp2p's yamux, noise-decoder and TCP classes for the libp2p transport (each
// applied once, when this module loads, and counted); libp2p.ts imports and re-exports their counters.
// Each patch leaves the wire format as it is: it only saves frames, exceptions or write(2) calls.

import "../util/polyfill.ts";
import { StreamState, YamuxStream } from "@chainsafe/libp2p-yamux/stream";
import { LengthPrefixedDecoder } from "@libp2p/utils";

/**
 * Yamux window updates, counted here. @chainsafe/libp2p-yamux 8 answers every data frame it receives
 * with a WINDOW_UPDATE frame of its own (it sends one whenever any of the window is used), so each of
 * our frames cost a second encrypted frame, TCP write and wake-up the other way. Go's yamux, which the
 * spec follows, waits until half the window is used; so does this module, by wrapping
 * YamuxStream.sendWindowUpdate once at load (`yamuxWindowUpdates.patched` says whether it could).
 * The sender still always holds at least half the window, so it never waits for an update it would
 * not have had.
 */
export const yamuxWindowUpdates = { patched: false, sent: 0, skipped: 0, everyFrame: false };

interface YamuxWindow {
  state: number;
  recvWindow: number;
  recvWindowCapacity: number;
}

{
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate?: (this: YamuxWindow) => void };
  const original = proto.sendWindowUpdate;
  if (typeof original === "function" && StreamState.SYNReceived !== undefined) {
    proto.sendWindowUpdate = function (this: YamuxWindow) {
      const flagsDue = this.state === StreamState.Init || this.state === StreamState.SYNReceived;
      const used = this.recvWindow - this.recvWindowCapacity;
      if (
        !yamuxWindowUpdates.everyFrame &&
        !flagsDue &&
        this.state !== StreamState.Paused &&
        typeof used === "number" &&
        used < this.recvWindow / 2
      ) {
        yamuxWindowUpdates.skipped++;
        return;
      }
      if (flagsDue || used > 0) yamuxWindowUpdates.sent++;
      original.call(this);
    };
    yamuxWindowUpdates.patched = true;
  }
}

/**
 * Noise's frame decoder (@libp2p/utils LengthPrefixedDecoder) finds out that its buffer holds no more
 * frames by catching the RangeError its length decoder throws, so every chunk received ends in a new
 * RangeError and its stack trace (about 3 % of a replica's main thread under load, measured here). An
 * empty buffer cannot hold a length prefix: wrapped here at load, the length decoder answers 0 for one
 * without being asked, the decoder's loop sees a frame longer than its buffer and stops the same way.
 * `emptyChecks` counts the throws saved; `patched` says whether the class could be wrapped.
 */
export const lengthPrefixGuard = { patched: false, emptyChecks: 0 };

interface GuardedDecoder {
  lengthDecoder: (data: { byteLength: number }) => number;
  encodingLength: (n: number) => number;
  [GUARDED]?: true;
}
const GUARDED = Symbol("orderer.lengthGuard");

{
  const proto = LengthPrefixedDecoder.prototype as unknown as {
    decode?: (this: GuardedDecoder, buf: unknown) => Generator<unknown>;
  };
  const original = proto.decode;
  if (typeof original === "function") {
    proto.decode = function (this: GuardedDecoder, buf: unknown) {
      // Only where a 0-byte frame still needs a prefix byte, or the loop would take 0 bytes forever.
      if (this[GUARDED] !== true && typeof this.lengthDecoder === "function" && this.encodingLength(0) > 0) {
        const inner = this.lengthDecoder;
        this.lengthDecoder = (data) => {
          if (data.byteLength !== 0) return inner(data);
          lengthPrefixGuard.emptyChecks++;
          return 0;
        };
        this[GUARDED] = true;
      }
      return original.call(this, buf);
    };
    lengthPrefixGuard.patched = true;
  }
}

/**
 * TCP writes, one per noise message. Noise hands the TCP connection each encrypted message as two
 * chunks (its 2-byte length, then the ciphertext), and @libp2p/tcp writes every chunk with its own
 * socket.write: two write(2) calls, often two TCP segments and two wake-ups of the reader, per frame.
 * Measured on a follower at one transaction at a time: 12 writes per block, 8 of them for 4 frames.
 * The connection's sendData is wrapped here, once at load, so that a send of several chunks below the
 * socket's high-water mark (16 KiB: every vote, signature and small batch) is corked: Node hands them
 * to the kernel in one writev. Larger sends are written as before (corked, they would wait for a
 * drain after every chunk). `patched` says whether the class could be
 * reached (its module is not exported: it is found next to the package's entry point), `corked` counts
 * the sends that were coalesced.
 */
export const tcpWriteCoalescing = { patched: false, corked: 0 };

interface CorkableConnection {
  socket?: { cork(): void; uncork(): void; writableHighWaterMark?: number };
}

try {
  const url = new URL("./socket-to-conn.js", import.meta.resolve("@libp2p/tcp"));
  const mod = (await import(url.href)) as { toMultiaddrConnection?: (init: unknown) => object };
  // The class is reached through a throwaway instance over an inert socket (nothing is sent or read).
  const noop = () => {};
  const inert = { remoteAddress: "127.0.0.1", remotePort: 1, on: noop, once: noop, setTimeout: noop };
  const sample = mod.toMultiaddrConnection?.({ socket: inert, log: Object.assign(noop, { trace: noop }) });
  const proto = sample ? (Object.getPrototypeOf(sample) as { sendData?: unknown }) : undefined;
  const original = proto?.sendData;
  if (proto && typeof original === "function") {
    proto.sendData = function (
      this: CorkableConnection,
      data: Uint8Array | { bufs?: unknown[]; byteLength: number },
    ) {
      const socket = this.socket;
      const chunks = data instanceof Uint8Array ? 1 : (data.bufs?.length ?? 1);
      // Only below the socket's high-water mark: a corked write is buffered, so a larger send would
      // report "wait for drain" after its first chunk and move one chunk per event-loop turn.
      if (
        chunks < 2 ||
        !socket ||
        typeof socket.cork !== "function" ||
        data.byteLength >= (socket.writableHighWaterMark ?? 16_384)
      )
        return original.call(this, data);
      tcpWriteCoalescing.corked++;
      socket.cork();
      try {
        return original.call(this, data);
      } finally {
        socket.uncork();
      }
    };
    tcpWriteCoalescing.patched = true;
  }
} catch {
  // Another @libp2p/tcp layout: writes stay as they were (`patched` stays false; a test checks it).
}
