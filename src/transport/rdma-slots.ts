// The rdma transport's data path on the wire (see rdma.ts): the KEY message that grants a peer its
// inbox, frames packed into inbox slots as segments, the slot MAC the owner checks, and frames
// reassembled from received slots. Sequence numbers, credits and connections stay rdma.ts's.

import { createHmac } from "node:crypto";

/** The KEY message's type on the SEND channel (HELLO and AUTH are 1 and 2, CREDIT is 4). */
export const MSG_KEY = 3;
export const SLOT_HDR = 32;
/** Segment header in a slot body: flags u8, length u32; a FIRST segment adds the frame's length u32. */
const SEG_HDR = 5;
const SEG_FIRST_HDR = 9;
/** The smallest slot: its header and a FIRST segment with some bytes. */
export const MIN_SLOT = SLOT_HDR + 16;
/** The largest slot: one mailbox request. */
export const MAX_SLOT = 16_320;
const FIRST = 1;
const LAST = 2;

/** KEY: type u8, the write key of our inbox for the peer u64 BE, its slots u32 BE and slot size u32 BE. */
export function keyMessage(rkey: bigint, slots: number, slotBytes: number): Buffer {
  const key = Buffer.alloc(17);
  key[0] = MSG_KEY;
  key.writeBigUInt64BE(rkey, 1);
  key.writeUInt32BE(slots, 9);
  key.writeUInt32BE(slotBytes, 13);
  return key;
}

/** A KEY message's content (`m.length` is 17), or null when its inbox shape is unusable. */
export function readKeyMessage(m: Buffer): { rkey: bigint; slots: number; slotBytes: number } | null {
  const slots = m.readUInt32BE(9);
  const slotBytes = m.readUInt32BE(13);
  if (slots < 2 || slotBytes < MIN_SLOT || slotBytes > MAX_SLOT) return null;
  return { rkey: m.readBigUInt64BE(1), slots, slotBytes };
}

/**
 * Packs queued frames into slot bodies as segments (a small frame shares its slot with the ones queued
 * after it; a large one spans slots): flags u8 (FIRST, LAST), length u32 LE, on a FIRST segment the
 * frame's total length u32 LE, then the bytes.
 */
export class SlotPacker {
  /** Where pack() writes a slot's body before postSlot copies it into the mailbox. */
  readonly body = new Uint8Array(MAX_SLOT);
  private readonly dv = new DataView(this.body.buffer);
  /** After pack(): the queue position reached (frame index, bytes of it written) ... */
  cursor = 0;
  sent = 0;
  /** ... and how many frames the slot completes (their last segment is in it). */
  completes = 0;

  /**
   * Packs frames[cursor..], of whose first frame `sent` bytes are already written, into one slot body
   * of at most `cap` bytes; returns its length (the body is `body[0..length)`).
   */
  pack(frames: readonly Uint8Array[], cursor: number, sent: number, cap: number): number {
    const body = this.body;
    const dv = this.dv;
    let used = 0;
    let completes = 0;
    while (cursor < frames.length) {
      const frame = frames[cursor] as Uint8Array;
      const first = sent === 0;
      const room = cap - used - (first ? SEG_FIRST_HDR : SEG_HDR);
      const take = Math.min(room, frame.length - sent);
      if (room < 0 || (take === 0 && frame.length > 0)) break;
      const flags = (first ? FIRST : 0) | (sent + take === frame.length ? LAST : 0);
      body[used] = flags;
      dv.setUint32(used + 1, take, true);
      used += SEG_HDR;
      if (first) {
        dv.setUint32(used, frame.length, true);
        used += 4;
      }
      body.set(frame.subarray(sent, sent + take), used);
      used += take;
      sent += take;
      if (sent < frame.length) break; // the slot is full
      cursor++;
      sent = 0;
      completes++;
    }
    this.cursor = cursor;
    this.sent = sent;
    this.completes = completes;
    return used;
  }
}

/** A frame being reassembled from its segments (kept on the link between slots). */
export interface Reassembly {
  assembling: Uint8Array | null;
  assembled: number;
}

/**
 * Reads the segments of one received slot (`dv` views it, at `off` in `mem`; its body ends at `end`),
 * continuing the frame `r` holds, and hands each completed frame to `deliver`, which returns false to
 * stop reading. Returns false when the slot is malformed: the connection must be dropped.
 */
export function readSlot(
  r: Reassembly,
  mem: Uint8Array,
  off: number,
  dv: DataView,
  end: number,
  frameMaxBytes: number,
  deliver: (frame: Uint8Array) => boolean,
): boolean {
  let at = SLOT_HDR;
  while (at < end) {
    if (end - at < SEG_HDR) return false;
    const flags = dv.getUint8(at);
    const take = dv.getUint32(at + 1, true);
    at += SEG_HDR;
    if (flags & FIRST) {
      if (r.assembling || end - at < 4) return false;
      const total = dv.getUint32(at, true);
      at += 4;
      if (total > frameMaxBytes || take > total) return false;
      r.assembling = new Uint8Array(total);
      r.assembled = 0;
    } else if (!r.assembling) {
      return false;
    }
    const buf = r.assembling as Uint8Array;
    if (take > end - at || r.assembled + take > buf.length) return false;
    buf.set(mem.subarray(off + at, off + at + take), r.assembled);
    r.assembled += take;
    at += take;
    if (!(flags & LAST)) {
      if (at !== end) return false; // only a slot's last segment may continue a frame
      continue;
    }
    if (r.assembled !== buf.length) return false;
    r.assembling = null;
    if (!deliver(buf)) return true;
  }
  return true;
}

/** HMAC-SHA256(key, offset u64 LE || slot[0..16) || slot[32..]), first 16 bytes: what the owner checks. */
export function slotMac(key: Uint8Array, offset: number, slot: Uint8Array): Uint8Array {
  const off = Buffer.alloc(8);
  off.writeUInt32LE(offset >>> 0, 0);
  off.writeUInt32LE(Math.floor(offset / 2 ** 32), 4);
  return createHmac("sha256", key)
    .update(off)
    .update(slot.subarray(0, 16))
    .update(slot.subarray(SLOT_HDR))
    .digest()
    .subarray(0, 16);
}
