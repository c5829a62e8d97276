// A minimal tgws client on the browser's WebSocket API (see browser_client.html). Node 22+
// has the same global WebSocket (Node 20.10+ with --experimental-websocket), so also:
//   node examples/browser_client.js URL API_KEY GROUP [PHONE CODE [PASSWORD]]
"use strict";

// Replies after which the account is logged in to Telegram (the seed's strings, byte for byte).
const READY = ["session already exists, call 'users'.", "logged in successfully",
  "session alreay exists, call 'users'", "Already verified. Send data to 'telegram login' or 'users'."];

// Log in with the API key (phone, code, password only if asked), then stream the messages
// of opts.group. print(line) gets each message as a JSON line, note(line) everything else
// (errors, notices, "done: N messages"); resolves to true after "done".
function tgwsChats(opts, print, note = print) {
  return new Promise((resolve) => {
    const ws = new WebSocket(opts.url);
    let done = false;
    const send = (event, data) => ws.send(JSON.stringify({ event, data }));
    ws.onopen = () => send("login", { apiKey: opts.apiKey });
    ws.onerror = () => note(`cannot talk to ${opts.url}`);
    ws.onclose = () => resolve(done);
    ws.onmessage = (frame) => {
      const { event, data } = JSON.parse(frame.data);
      const m = data.message;
      if (data.status === "failed") {
        note(`${event} failed: ${m}`); ws.close();
      } else if (data.status === "progress") {
        note(`(${typeof m === "string" ? m : JSON.stringify(m)})`); // e.g. a flood wait
      } else if (typeof m === "object") {
        print(JSON.stringify(m.chat)); // {"group": ..., "chat": {...}}: one message
      } else if (m === "send phone number") {
        if (!opts.phone) { note("no Telegram session yet: give a phone and code"); ws.close(); }
        else send("telegram login", { phone: opts.phone });
      } else if (m === "send code") {
        send("telegram login", { code: opts.code });
      } else if (m === "send password") {
        send("telegram login", { password: opts.password });
      } else if (READY.includes(m)) {
        send("chats", { group: [{ name: opts.group, status: "" }], status: "" });
      } else if (m === "done") {
        note(`done: ${data.count} messages`); done = true; ws.close();
      } else if (m !== "sending chats") {
        note(`unexpected reply: ${m}`);
      }
    };
  });
}

if (typeof document === "undefined" && typeof process !== "undefined") { // run by Node
  const [url, apiKey, group, phone, code, password] = process.argv.slice(2);
  // Only JSON lines on stdout (so `| jq` works); the rest on stderr.
  tgwsChats({ url, apiKey, group, phone, code, password }, console.log, console.error)
    .then((ok) => { process.exitCode = ok ? 0 : 1; });
}
