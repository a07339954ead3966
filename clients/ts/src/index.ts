// The Eventuall API client: openapi-fetch over the types openapi-typescript
// generates from the server's /openapi.json (`src/schema.d.ts`, regenerated
// by `scripts/gen-client.sh`), plus the WebSocket message unions of the same
// document's components.
import createFetchClient, { type Client, type ClientOptions, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";

type Schemas = components["schemas"];

// ---- HTTP bodies ----
export type ErrorBody = Schemas["ErrorBody"];
export type ErrorCode = Schemas["ErrorCode"];
export type RoomSnapshot = Schemas["RoomSnapshot"];
export type PresenceEntry = Schemas["PresenceEntry"];
export type QueueView = Schemas["QueueView"];
export type QueueEntry = Schemas["QueueEntry"];
export type Interview = Schemas["Interview"];
export type Message = Schemas["Message"];
export type InterviewState = Schemas["InterviewState"];
export type RecordingStatusView = Schemas["RecordingStatusView"];
export type Clip = Schemas["Clip"];
export type DeadLetter = Schemas["DeadLetter"];
export type EventAnalytics = Schemas["EventAnalytics"];

// ---- WebSocket messages (JSON text frames) ----
/** Server → client on `/parties/event/{event_id}`. */
export type EventRoomServerMessage = Schemas["EventRoomServerMessage"];
/** Client → server on `/parties/event/{event_id}`. */
export type EventRoomClientMessage = Schemas["EventRoomClientMessage"];
/** Server → client on `/parties/interview/{id}`. */
export type InterviewServerMessage = Schemas["InterviewServerMessage"];
/** Client → server on `/parties/interview/{id}` (binary frames: one recorded audio answer). */
export type InterviewClientMessage = Schemas["InterviewClientMessage"];
/** Server → client on `/parties/user-interviews/{user_id}`. */
export type UserInterviewsServerMessage = Schemas["UserInterviewsServerMessage"];

/** The member of a message union with the given `type`. */
export type MessageOfType<U extends { type: string }, T extends U["type"]> = Extract<U, { type: T }>;

/** The socket routes and the messages each one carries. */
export interface Sockets {
  "/parties/event/{event_id}": { params: { event_id: string }; server: EventRoomServerMessage; client: EventRoomClientMessage };
  "/parties/interview/{id}": { params: { id: string }; server: InterviewServerMessage; client: InterviewClientMessage };
  "/parties/user-interviews/{user_id}": { params: { user_id: string }; server: UserInterviewsServerMessage; client: never };
  /** y-websocket (binary frames); use `y-websocket`'s WebsocketProvider with this URL's base. */
  "/parties/queue/{event_id}": { params: { event_id: string }; server: never; client: never };
}

/** A token, or a function that returns the current one (called per request). */
export type TokenSource = string | (() => string | undefined | Promise<string | undefined>);

export interface EventuallClientOptions extends Omit<ClientOptions, "baseUrl"> {
  /** The server, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer …` on every request. */
  token?: TokenSource;
}

export type EventuallClient = Client<paths>;

async function resolveToken(token: TokenSource | undefined): Promise<string | undefined> {
  return typeof token === "function" ? await token() : token;
}

/** A typed client of every HTTP route: `client.GET("/event/{event_id}/snapshot", {params: {path: {event_id}}})`. */
export function createClient({ token, ...options }: EventuallClientOptions): EventuallClient {
  const client = createFetchClient<paths>(options);
  if (token !== undefined) {
    const bearer: Middleware = {
      async onRequest({ request }) {
        const value = await resolveToken(token);
        if (value) request.headers.set("Authorization", `Bearer ${value}`);
        return request;
      },
    };
    client.use(bearer);
  }
  return client;
}

/**
 * The `ws://` / `wss://` URL of a socket route, with its path parameters and
 * `?token=` (plus any `extra` query parameters, e.g. partysocket's `_pk`).
 */
export function socketUrl<P extends keyof Sockets>(
  baseUrl: string,
  path: P,
  params: Sockets[P]["params"],
  token: string,
  extra: Record<string, string> = {},
): string {
  const filled = path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = (params as Record<string, string>)[name];
    if (value === undefined) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(value);
  });
  const url = new URL(filled, baseUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("token", token);
  for (const [key, value] of Object.entries(extra)) url.searchParams.set(key, value);
  return url.toString();
}

/** Parses a server text frame of socket `P` (a frame without a string `type` throws). */
export function parseServerMessage<P extends keyof Sockets>(_path: P, text: string): Sockets[P]["server"] {
  const value: unknown = JSON.parse(text);
  if (typeof value !== "object" || value === null || typeof (value as { type?: unknown }).type !== "string") {
    throw new Error(`not a typed frame: ${text.slice(0, 200)}`);
  }
  return value as Sockets[P]["server"];
}

/** Serialises a client text frame of socket `P`. */
export function clientMessage<P extends keyof Sockets>(_path: P, message: Sockets[P]["client"]): string {
  return JSON.stringify(message);
}
