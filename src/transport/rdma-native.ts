// Loads the native-rdma addon (native-rdma/, built from source at install). When it is missing the rdma
// transport is unavailable and says why (the build's own status, or the load error); nothing else in
// the product needs it.

import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { OrdererError } from "../util/errors.ts";

/** What the owner's event loop reports, in batches. */
export interface RdmaEvent {
  readonly type:
    | "connected"
    | "accepted"
    | "closed"
    | "recv"
    | "write"
    | "completion"
    | "acked"
    | "security"
    | "writable";
  readonly conn: number;
  /** security: why a request or connection was refused; closed: why the connection ended. */
  readonly reason?: string;
  /** recv: the SEND payload; completion: READ data; security "identity-banned": the identity. */
  readonly data?: Buffer;
  /** write (a WRITE with immediate landed in one of our regions): where. */
  readonly region?: number;
  readonly offset?: number;
  readonly length?: number;
  readonly imm?: number;
  /** completion: 0 ok, 1 refused by the remote side (the same status for every refusal). */
  readonly status?: number;
  readonly wrId?: number;
  readonly wasUp?: boolean;
  /** acked: how many of our requests on the connection completed (in posting order), whatever their status. */
  readonly count?: number;
}

export interface ShmProviderOptions {
  onEvents(events: RdmaEvent[]): void;
  /** Refused requests after which a connection is closed (default 3). */
  closeAfter?: number;
  /** Refused requests after which an identity is banned (default 12). */
  banAfter?: number;
  maxConnections?: number;
  /** Revoked keys remembered so they are never granted again (default 65536; keys are 64 random bits). */
  revokedMax?: number;
  maxKeys?: number;
}

export interface SlottedGrant {
  /** HMAC-SHA256 key that every written slot must carry a MAC under. */
  readonly macKey: Buffer;
  readonly slotSize: number;
}

export const PERM_READ = 1;
export const PERM_WRITE = 2;

/** The shm provider (see native-rdma/src/addon.cc). */
export interface ShmProvider {
  listen(path: string): void;
  connect(path: string, opts?: { unsealed?: boolean }): number;
  registerRegion(bytes: number): { id: number; memory: ArrayBuffer };
  deregister(region: number): boolean;
  grant(
    region: number,
    conn: number,
    perms: number,
    offset: number,
    length: number,
    slots?: SlottedGrant,
  ): bigint;
  revoke(rkey: bigint): boolean;
  rotate(rkey: bigint): bigint;
  exclusiveWriter(region: number, conn: number): bigint | null;
  postWrite(
    conn: number,
    wrId: number,
    rkey: bigint,
    offset: number,
    data: Uint8Array,
    imm?: number,
  ): boolean;
  postRead(conn: number, wrId: number, rkey: bigint, offset: number, length: number): boolean;
  postSend(conn: number, wrId: number, data: Uint8Array): boolean;
  /**
   * A WRITE with immediate of one whole slot for a slotted key, its header and MAC built natively: seq
   * u64 LE, body length u32 LE, flags u32 (0), the first 16 bytes of HMAC-SHA256(macKey, offset u64 LE ||
   * header[0..16) || body) (what `slotMac` computes), then the body.
   */
  postSlot(
    conn: number,
    wrId: number,
    rkey: bigint,
    offset: number,
    macKey: Uint8Array,
    seq: number,
    body: Uint8Array,
    imm: number,
  ): boolean;
  /** Test hook (a Byzantine requester): posts arbitrary slot bytes. */
  postRaw(conn: number, slot: Uint8Array): boolean;
  /** Test hook (a Byzantine peer): writes arbitrary bytes into the shared mailbox. */
  mailboxWrite(conn: number, offset: number, bytes: Uint8Array): boolean;
  mailboxFd(conn: number): number;
  setIdentity(conn: number, identity: string): boolean;
  isBanned(identity: string): boolean;
  closeConnection(conn: number): void;
  stats(): Record<string, number>;
  close(): void;
}

export interface MailboxLayout {
  readonly slotBytes: number;
  readonly slots: number;
  readonly headerBytes: number;
  readonly maxPayload: number;
  readonly ctlBytes: number;
  readonly ringBytes: number;
  readonly mailboxHeader: number;
  readonly mailboxBytes: number;
  readonly slotHeaderBytes: number;
  readonly macBytes: number;
}

export interface VerbsProbe {
  readonly status: "ok" | "no-device" | "no-library";
  readonly library: string | null;
  readonly rdmacm: boolean;
  readonly devices: readonly string[];
  readonly reason: string;
}

export interface RdmaAddon {
  ShmProvider: new (opts: ShmProviderOptions) => ShmProvider;
  probeVerbs(): VerbsProbe;
  layout(): MailboxLayout;
}

export type RdmaNative =
  | { readonly available: true; readonly addon: RdmaAddon }
  | { readonly available: false; readonly reason: string };

/** The rdma transport cannot run here (the addon is not built or does not load). */
export class RdmaUnavailableError extends OrdererError<"RDMA_UNAVAILABLE"> {
  override readonly name = "RdmaUnavailableError";
  constructor(message: string) {
    super("RDMA_UNAVAILABLE", message);
  }
}

const ADDON = fileURLToPath(new URL("../../native-rdma/build/Release/orderer_rdma.node", import.meta.url));
const STATUS = fileURLToPath(new URL("../../native-rdma/build/status.json", import.meta.url));

let cached: RdmaNative | undefined;

/** The addon, or why it is unavailable. ORDERER_RDMA_ADDON names another build of it (tests). */
export function loadRdmaNative(): RdmaNative {
  if (cached) return cached;
  const addonPath = process.env.ORDERER_RDMA_ADDON ?? ADDON;
  if (!existsSync(addonPath)) {
    let reason = "native-rdma is not built (run `npm run build:rdma`)";
    try {
      const s = JSON.parse(readFileSync(STATUS, "utf8")) as { ok?: boolean; reason?: string };
      if (s.ok === false && s.reason) reason = `native-rdma is not built: ${s.reason}`;
    } catch {
      // no status file: the build never ran
    }
    cached = { available: false, reason };
    return cached;
  }
  try {
    const addon = createRequire(import.meta.url)(addonPath) as RdmaAddon;
    cached = { available: true, addon };
  } catch (err) {
    cached = { available: false, reason: `native-rdma does not load: ${(err as Error).message}` };
  }
  return cached;
}

/** The addon, or an RdmaUnavailableError naming the reason. */
export function requireRdmaNative(): RdmaAddon {
  const n = loadRdmaNative();
  if (!n.available) throw new RdmaUnavailableError(n.reason);
  return n.addon;
}
