// Type declarations for wavelane.js, the browser client of a Wavelane server (docs/clients.md).

export type State = "connecting" | "connected" | "disconnected" | "closed";

export interface Meta {
  topic: string;
  /** The publication's offset in its topic (0 when outside the sequence). */
  offset: number;
  /** false on the first publication after a reconnect whose recovery was impossible: resync. */
  recovered?: false;
}

export interface Member { user: string | null; conn: string; node?: string; info: unknown }

export interface Options {
  /** A JWT, sent as the `?token=` query parameter (browsers cannot set WebSocket headers). */
  token?: string;
  /** Returns a fresh JWT: used to refresh before `exp` and to reconnect after 4001. */
  getToken?: () => Promise<string>;
  /** First reconnect delay in ms (doubles per failed attempt, times a random 0.5–1). Default 200. */
  minBackoff?: number;
  /** Cap of the reconnect delay in ms. Default 10000. */
  maxBackoff?: number;
  /** Messages `send` may hold while offline. Default 1000. */
  maxQueue?: number;
  /** Timeout of a request (subscribe, presence…) in ms. Default 10000. */
  requestTimeout?: number;
  /** Refresh the token this many seconds before `exp`. Default 10. */
  refreshMargin?: number;
  /** Query parameter that carries the token; null to send none. Default "token". */
  tokenParam?: string | null;
}

export interface SubscribeOptions {
  /** Ask for the last N retained publications first (servers that support it). */
  history?: number;
  /** Receive join/leave events of this topic. */
  presence?: boolean;
}

export declare class Subscription {
  readonly topic: string;
  readonly active: boolean;
  /** The last delivered offset and its stream's epoch (null before the first position). */
  readonly epoch: string | null;
  readonly offset: number;
  /** Resolves on `subscribed`; rejects with an Error whose `code` is the server's error code. */
  readonly ready: Promise<unknown>;
  presence(timeout?: number): Promise<Member[]>;
  onJoin(cb: (member: Member) => void): this;
  onLeave(cb: (member: Member) => void): this;
  unsubscribe(): void;
}

export declare class Wavelane {
  constructor(url: string, options?: Options);
  readonly state: State;
  /** The server's `ready` message of the current connection. */
  readonly ready: { conn: string; user: string | null; exp?: number; [k: string]: unknown } | null;
  readonly reconnects: number;
  readonly duplicatesDropped: number;
  on(event: "state", cb: (state: State) => void): this;
  on(event: "resync", cb: (topic: string, reason: string) => void): this;
  on(event: "disconnect", cb: (info: { code: number; reason: string }) => void): this;
  on(event: "refreshed", cb: (exp: number) => void): this;
  on(event: "error", cb: (error: unknown) => void): this;
  /** Frames that are not topic publications (send / send_user from the server). */
  on(event: "message", cb: (data: unknown) => void): this;
  subscribe(topic: string, callback: (data: unknown, meta: Meta) => void, options?: SubscribeOptions): Subscription;
  send(data: string | ArrayBuffer | ArrayBufferView | unknown): void;
  /** Call the server application's `method`; rejects with an Error carrying `code` and `error`. */
  rpc<T = unknown>(method: string, params?: unknown, options?: { timeout?: number }): Promise<T>;
  close(): void;
}

export default Wavelane;
