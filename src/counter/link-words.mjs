// The shared-memory words between a replica's thread that calls its counter (client.ts) and the counter
// link's socket thread (link-worker.mjs), one Int32Array of CTRL_WORDS. Plain JavaScript so that the
// socket thread needs no loader; link-words.d.mts types it for client.ts.

/** The socket thread's count of sessions published; 0 while a session's number and key are replaced. */
export const C_GEN = 0;
/** 1 while the socket to the counter is up and its session usable. */
export const C_UP = 1;
/** 1 while the calling thread is blocked reading a reply. */
export const C_BUSY = 2;
/** The calling thread's call sequence number. */
export const C_SEQ = 3;
/** The call whose read the socket thread ended, and why (WAKE_LOST, WAKE_TIMEOUT). */
export const C_WAKE_SEQ = 4;
export const C_WAKE_REASON = 5;
/** How long a call may wait for its reply. */
export const C_TIMEOUT_MS = 6;
/** The counter's number for the current session (sealed into every FIFO frame). */
export const C_SESSION_NO = 7;
export const CTRL_WORDS = 8;

export const WAKE_LOST = 1;
export const WAKE_TIMEOUT = 2;
