// Drives the Composio JS SDK (@composio/core) and an MCP client (@modelcontextprotocol/sdk) for the
// gateway tests. One scenario, given as JSON in argv[2]:
//   {action: "sdk", baseURL, apiKey, userId}: list tools, execute one, open a tool-router session and
//     use its MCP URL and headers (as the SDK hands them out) with an MCP client over streamable HTTP;
//   {action: "mcp", url, headers, transport: "http"|"sse"}: an MCP client on that URL.
// prints one JSON line with what each step returned.
import { Composio } from "@composio/core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const scenario = JSON.parse(process.argv[2]);
const TOOL = "GITHUB_STAR_A_REPOSITORY";

async function mcp(url, headers, transport) {
  const client = new Client({ name: "gateway-test", version: "1.0.0" });
  const options = { requestInit: { headers } };
  if (transport === "sse") {
    // The SSE stream itself is a GET through EventSource: it takes its headers from a fetch wrapper.
    options.eventSourceInit = { fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, ...headers } }) };
  }
  const target = new URL(url);
  await client.connect(transport === "sse" ? new SSEClientTransport(target, options) : new StreamableHTTPClientTransport(target, options));
  const listed = await client.listTools();
  const called = await client.callTool({ name: TOOL, arguments: { owner: "mastra-ai", repo: "mastra" } });
  await client.close();
  return { tools: listed.tools.map((tool) => tool.name), result: JSON.parse(called.content[0].text) };
}

async function sdk() {
  const composio = new Composio({ apiKey: scenario.apiKey, baseURL: scenario.baseURL, allowTracking: false, disableVersionCheck: true });
  const tools = await composio.tools.getRawComposioTools({ toolkits: ["GITHUB"] });
  const executed = await composio.tools.execute(TOOL, {
    userId: scenario.userId,
    arguments: { owner: "mastra-ai", repo: "mastra" },
    dangerouslySkipVersionCheck: true,
  });
  const session = await composio.create(scenario.userId);
  return {
    tools: tools.map((tool) => tool.slug),
    executed: { successful: executed.successful, data: executed.data },
    session: { id: session.sessionId, mcp: session.mcp },
    mcp: await mcp(session.mcp.url, session.mcp.headers, "http"),
  };
}

try {
  const result = scenario.action === "sdk" ? await sdk() : await mcp(scenario.url, scenario.headers, scenario.transport);
  console.log(JSON.stringify({ ok: true, ...result }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: { name: error?.name, message: String(error?.message ?? error), status: error?.status ?? error?.code ?? null } }));
}
