// Drives the Vercel AI SDK (`ai` 5 with @ai-sdk/openai, @ai-sdk/anthropic, @ai-sdk/google), as a
// Mastra app in a sandbox does, for the gateway tests. One scenario, given as JSON in argv[2]:
//   {provider: "openai-chat"|"openai-responses"|"anthropic"|"google", baseURL, apiKey, model,
//    action: "generate"|"stream"|"abort"|"embed", prompt, maxRetries, abortAfter}
// prints one JSON line: {text, chunks, error: {name, message, statusCode, isRetryable}|null, ...}.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createGoogleGenerativeAI } from "@ai-sdk/google";
import { createOpenAI } from "@ai-sdk/openai";
import { embedMany, generateText, streamText } from "ai";

const scenario = JSON.parse(process.argv[2]);

function model() {
  const { provider, baseURL, apiKey, model: name } = scenario;
  if (provider === "openai-chat") return createOpenAI({ baseURL, apiKey }).chat(name);
  if (provider === "openai-responses") return createOpenAI({ baseURL, apiKey }).responses(name);
  if (provider === "anthropic") return createAnthropic({ baseURL, apiKey })(name);
  if (provider === "google") return createGoogleGenerativeAI({ baseURL, apiKey })(name);
  throw new Error(`unknown provider ${provider}`);
}

function embeddingModel() {
  const { provider, baseURL, apiKey, model: name } = scenario;
  if (provider.startsWith("openai")) return createOpenAI({ baseURL, apiKey }).textEmbeddingModel(name);
  if (provider === "google") return createGoogleGenerativeAI({ baseURL, apiKey }).textEmbeddingModel(name);
  throw new Error(`no embeddings for ${provider}`);
}

function describe(error) {
  if (error == null) return null;
  // A stream's error part carries the provider's error object; a thrown error is an APICallError
  // (or a RetryError around the last one).
  const inner = error.lastError ?? error;
  return {
    name: error.name ?? null,
    message: String(inner.message ?? inner.error?.message ?? JSON.stringify(inner)),
    statusCode: inner.statusCode ?? null,
    isRetryable: inner.isRetryable ?? null,
    attempts: error.errors ? error.errors.length : 1,
  };
}

async function run() {
  const common = { model: model(), prompt: scenario.prompt, maxRetries: scenario.maxRetries ?? 2 };
  if (scenario.action === "generate") {
    const result = await generateText(common);
    return { text: result.text, usage: result.usage };
  }
  if (scenario.action === "embed") {
    const result = await embedMany({ model: embeddingModel(), values: scenario.values, maxRetries: 0 });
    return { embeddings: result.embeddings.length, usage: result.usage };
  }
  const controller = new AbortController();
  let streamError = null;
  const result = streamText({
    ...common,
    abortSignal: controller.signal,
    onError: ({ error }) => {
      streamError = error;
    },
  });
  let text = "";
  let chunks = 0;
  try {
    for await (const part of result.fullStream) {
      if (part.type === "text-delta") {
        text += part.text;
        chunks += 1;
        if (scenario.action === "abort" && chunks === scenario.abortAfter) controller.abort();
      } else if (part.type === "error") {
        streamError = part.error;
      }
    }
  } catch (error) {
    streamError = streamError ?? error;
  }
  return { text, chunks, aborted: controller.signal.aborted, error: describe(streamError) };
}

try {
  console.log(JSON.stringify({ ok: true, ...(await run()) }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: describe(error) }));
}
