// A small, believable event for the console's screenshots: people connected
// to the room (real WebSockets), stage changes, a queue and a recording, all
// through the public API.
import WebSocket from "ws";
import { sign } from "./server.mjs";

export const SEED_EVENT = "launch";

/** Seeds `server`; returns the open sockets (close them when done). */
export async function seedConsole(server, { event = SEED_EVENT } = {}) {
  const moderator = sign({ sub: "ops", role: "moderator", name: "Ops" });
  const post = async (path, body) => {
    const response = await fetch(`${server.http}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${moderator}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
    return response.json();
  };

  const people = [
    ["alice", "Alice Moreau"],
    ["bob", "Bob Okafor"],
    ["carol", "Carol Lindqvist"],
    ["dave", "Dave Ito"],
  ];
  const sockets = [];
  for (const [sub, name] of people) {
    const token = sign({ sub, name, events: [event] });
    const socket = new WebSocket(`ws://${server.host}/parties/event/${event}?token=${token}&_pk=${sub}-tab`);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${sub}: no snapshot`)), 5000);
      socket.once("message", () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once("error", reject);
    });
    sockets.push(socket);
  }
  await post(`/event/${event}/stage/enter`, { userId: "alice" });
  await post(`/event/${event}/stage/enter`, { userId: "bob" });
  await post(`/event/${event}/stage/exit`, { userId: "alice" });
  await post(`/event/${event}/stage/enter`, { userId: "carol" });
  await post(`/event/${event}/queue/add`, { userId: "dave", name: "Dave Ito" });
  await post(`/event/${event}/queue/add`, { userId: "alice", name: "Alice Moreau" });
  await post(`/event/${event}/queue/promote`, { userId: "dave" });
  await post(`/cloudcaster/${event}/start`);
  return { moderator, sockets, post };
}
