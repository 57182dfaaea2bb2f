// The rdma transport's delivery accounting and credits (see rdma.ts): per connection, one mark per
// posted request saying how many frames it completes, so that a frame leaves the queue only once the
// write of its last slot has completed; and the CREDIT message by which a receiver returns the slots
// it consumed, every quarter ring, so that the sender never laps it.

/** The CREDIT message's type on the SEND channel (HELLO, AUTH and KEY are 1 to 3). */
export const MSG_CREDIT = 4;

/** A sent-marks queue longer than this (and than half its marks) is compacted. */
const COMPACT_MIN_HEAD = 4096;

/** CREDIT: type u8, the sequence number of the next slot expected u64 BE (all before it consumed). */
export function creditMessage(upTo: number): Buffer {
  const m = Buffer.alloc(9);
  m[0] = MSG_CREDIT;
  m.writeBigUInt64BE(BigInt(upTo), 1);
  return m;
}

/** A CREDIT message's slot count (`m.length` is 9). */
export function readCreditMessage(m: Buffer): number {
  return Number(m.readBigUInt64BE(1));
}

/** Whether a receiver owes a credit: a quarter of its ring of `slots` consumed since the last one. */
export function creditDue(expectSeq: number, reported: number, slots: number): boolean {
  return expectSeq - reported >= slots / 4;
}

interface Marks {
  readonly marks: number[];
  head: number;
  /** A request on the connection was refused: nothing more on it counts as delivered. */
  failed: boolean;
}

/** The requests posted on each open connection, in order, with their marks. */
export class PostedRequests {
  private readonly byConn = new Map<number, Marks>();

  /** A new connection: requests may be posted on it. */
  open(conn: number): void {
    this.byConn.set(conn, { marks: [], head: 0, failed: false });
  }

  close(conn: number): void {
    this.byConn.delete(conn);
  }

  clear(): void {
    this.byConn.clear();
  }

  /** One of our requests on `conn` was refused by the peer. */
  fail(conn: number): void {
    const q = this.byConn.get(conn);
    if (q) q.failed = true;
  }

  /** Posts one request on an open `conn` with `doPost`, remembering `mark` if it was posted. */
  post(conn: number, mark: number, doPost: () => boolean): boolean {
    const q = this.byConn.get(conn);
    if (!q || !doPost()) return false;
    q.marks.push(mark);
    return true;
  }

  /**
   * `count` more requests on `conn` completed, in posting order: `complete` is called with the mark of
   * each (unless one of the connection's requests failed). False when `conn` is not open.
   */
  acked(conn: number, count: number, complete: (mark: number) => void): boolean {
    const q = this.byConn.get(conn);
    if (!q) return false;
    for (let k = 0; k < count && q.head < q.marks.length; k++) {
      const mark = q.marks[q.head++] as number;
      if (!q.failed) complete(mark);
    }
    if (q.head > COMPACT_MIN_HEAD && q.head * 2 > q.marks.length) {
      q.marks.splice(0, q.head);
      q.head = 0;
    }
    return true;
  }
}
