// The one agent of the bundled project. Its model calls go through the cloud gateway: the OpenAI
// provider reads the gateway's address and the sandbox's virtual key from the environment the cloud
// gives every sandbox, so no real provider key ever reaches the sandbox.
import { createOpenAI } from '@ai-sdk/openai';
import { Agent } from '@mastra/core/agent';

const gateway = createOpenAI({
  baseURL: process.env.OPENAI_BASE_URL,
  apiKey: process.env.OPENAI_API_KEY,
});

export const assistant = new Agent({
  id: 'assistant',
  name: 'Assistant',
  instructions: 'You are a helpful assistant. Answer briefly and plainly.',
  model: gateway.chat(process.env.SHMASTRA_MODEL ?? 'gpt-4o-mini'),
});
