// A Node `ws` client for the relay's tests: node client.cjs URL BEHAVIOUR [MESSAGE_BYTES].
// Prints one JSON line when the connection has ended: {"code", "reason", "extensions", "echoed"}.
const WebSocket = require("ws");

const [url, behaviour, size] = process.argv.slice(2);
const ws = new WebSocket(url, { perMessageDeflate: true });
let echoed = 0;
ws.on("open", () => {
  if (behaviour === "close_4002") ws.close(4002, "bye");
  else if (behaviour === "close_empty") ws.close();
  else if (behaviour === "drop") {
    ws.send("go");
    setTimeout(() => ws.terminate(), 100);
  } else if (behaviour === "echo") ws.send("a".repeat(Number(size)));
  else ws.send("go");
});
ws.on("message", (data) => {
  echoed += data.length;
  if (behaviour === "echo") ws.close(1000, "done");
});
ws.on("error", () => {});
ws.on("close", (code, reason) =>
  console.log(JSON.stringify({ code, reason: reason.toString(), extensions: ws.extensions, echoed })),
);
