// The part of node-zookeeper-client (pure JavaScript, no types shipped) that bench/zookeeper.ts uses.
declare module "node-zookeeper-client" {
  export interface Stat {
    readonly version: number;
  }
  export interface Client {
    connect(): void;
    close(): void;
    once(event: "connected" | "disconnected" | "expired", cb: () => void): void;
    on(event: "state", cb: (state: unknown) => void): void;
    create(path: string, data: Buffer, mode: number, cb: (err: Error | null, path: string) => void): void;
    setData(path: string, data: Buffer, version: number, cb: (err: Error | null, stat: Stat) => void): void;
    getData(path: string, cb: (err: Error | null, data: Buffer, stat: Stat) => void): void;
    remove(path: string, version: number, cb: (err: Error | null) => void): void;
  }
  export const CreateMode: { readonly PERSISTENT: number; readonly EPHEMERAL: number };
  export function createClient(
    connectionString: string,
    options?: { sessionTimeout?: number; spinDelay?: number; retries?: number },
  ): Client;
  const zookeeper: { createClient: typeof createClient; CreateMode: typeof CreateMode };
  export default zookeeper;
}
