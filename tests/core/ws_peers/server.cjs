// A Node `ws` upstream for the relay's tests. Prints {"port": N}, then one JSON line per ended connection:
// {"id", "code", "reason", "extensions"}. The path /case/<behaviour>/<id> picks what the server does.
const { WebSocketServer } = require("ws");

const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: true });
server.on("listening", () => console.log(JSON.stringify({ port: server.address().port })));
server.on("connection", (ws, request) => {
  const [, , behaviour, id] = request.url.split("/");
  const extensions = ws.extensions;
  ws.on("message", (data, isBinary) => {
    if (behaviour === "drop") ws.terminate();
    else ws.send(data, { binary: isBinary });
  });
  ws.on("close", (code, reason) =>
    console.log(JSON.stringify({ id, code, reason: reason.toString(), extensions })),
  );
  if (behaviour === "close_4001") ws.close(4001, "server bye");
  else if (behaviour === "close_empty") ws.close();
});
