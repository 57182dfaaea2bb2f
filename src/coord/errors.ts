// ZooKeeper's result codes (KeeperException.Code), with their numeric values, so users of ZooKeeper
// clients recognise them. Expected outcomes of an operation are results carrying one of these codes,
// never exceptions.

import { OrdererError } from "../util/errors.ts";

export const ZK_CODES = {
  OK: 0,
  SYSTEMERROR: -1,
  RUNTIMEINCONSISTENCY: -2,
  DATAINCONSISTENCY: -3,
  CONNECTIONLOSS: -4,
  MARSHALLINGERROR: -5,
  UNIMPLEMENTED: -6,
  OPERATIONTIMEOUT: -7,
  BADARGUMENTS: -8,
  UNKNOWNSESSION: -12,
  APIERROR: -100,
  NONODE: -101,
  NOAUTH: -102,
  BADVERSION: -103,
  NOCHILDRENFOREPHEMERALS: -108,
  NODEEXISTS: -110,
  NOTEMPTY: -111,
  SESSIONEXPIRED: -112,
  INVALIDACL: -114,
  AUTHFAILED: -115,
  SESSIONMOVED: -118,
  NOWATCHER: -121,
  REQUESTTIMEOUT: -122,
  QUOTAEXCEEDED: -125,
  THROTTLEDOP: -127,
} as const;

export type ZkCode = keyof typeof ZK_CODES;

export const isZkCode = (s: unknown): s is ZkCode => typeof s === "string" && s in ZK_CODES;

/** A failed coordination call on the client side: `code` is a ZooKeeper code, `path` the znode if any. */
export class CoordError extends OrdererError<ZkCode> {
  override readonly name = "CoordError";
  constructor(
    code: ZkCode,
    message: string,
    readonly path?: string,
  ) {
    super(code, message);
  }

  /** ZooKeeper's numeric value of the code. */
  get errno(): number {
    return ZK_CODES[this.code];
  }
}
